"""What the canary records per job, and how it runs one batch: halving on CUDA out-of-memory."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["JobCheck", "PartCheck", "first_line", "fit_batch", "free_memory", "micro_batches_for",
           "rank_batch"]


@dataclass
class PartCheck:
    """One measured batch: ``name`` in ``train | nll | dt_nll | sample | features``.

    ``batch`` ran (after the cap or halving) where ``wanted`` is configured; ``status`` is
    ``ok``, ``skip`` (with ``note``) or ``oom`` (``batch`` is then the largest that fits).
    """

    name: str
    wanted: int
    batch: int
    seconds: float | None = None
    status: str = "ok"
    note: str = ""


@dataclass
class JobCheck:
    """The canary's verdict on one job (see module docstring); ``ok`` is False when ``error`` is set."""

    key: str
    dataset: str
    method: str
    device: str
    ok: bool = False
    error: str = ""
    world_size: int = 1
    accumulation: int = 1  # micro-batches per rank and optimizer step
    capped_at: int = 0  # the cap applied to some batch (0: none)
    save_seconds: float | None = None
    load_seconds: float | None = None
    checkpoint_bytes: int = 0
    shared_with: str = ""  # the job whose checkpoint round trip this job's network came from
    peak_bytes: int = 0
    memory_kind: str = ""
    parts: list[PartCheck] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)


def rank_batch(job: dict) -> tuple[int, int, int]:
    """``(world size, micro-batch per rank, micro-batches per rank)`` of a resolved job.

    Raises:
        ValueError: ``micro_batches`` does not divide ``batch_size`` or is not a multiple of the world size.
    """
    res, tcfg = job["resources"], job["train"]
    per_node = int(res.get("tasks_per_node", max(int(res.get("gpus_per_node", 0)), 1)))
    world = int(res.get("nodes", 1)) * per_node
    batch = int(tcfg["batch_size"])
    chunks = int(tcfg.get("micro_batches", world))
    if batch % chunks or chunks % world:
        raise ValueError(f"train.{job['dataset']}: batch_size={batch}, micro_batches={chunks}, "
                         f"world size {world}: "
                         "need micro_batches | batch_size and world size | micro_batches")
    return world, batch // chunks, chunks // world


def first_line(exc: BaseException) -> str:
    """``Type: first non-empty line of the message`` (at most 300 characters)."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def free_memory(device: torch.device) -> None:
    """Collect garbage and return cached CUDA blocks (between jobs and after an OOM).

    On a CPU also glibc's ``malloc_trim(0)``: freed tensors of an earlier, smaller network stay in
    the heap otherwise, and the next job's RSS high-water would count them (measured: ImageNet
    128's peak 14.9 GiB after the 15 other paper jobs in one process, vs 11.0 GiB alone).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def fit_batch(part: PartCheck, run: Callable[[int], float | None], device: torch.device, cap: int) -> None:
    """Run ``run(batch)`` (returns its seconds, or None to time it here); halve on CUDA OOM."""
    batch = min(part.wanted, cap) if cap else part.wanted
    while True:
        try:
            start = time.perf_counter()
            seconds = run(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            part.seconds = round(seconds if seconds is not None else time.perf_counter() - start, 4)
            part.batch = batch
            return
        except torch.cuda.OutOfMemoryError:
            free_memory(device)
            if batch == 1:
                raise
            batch //= 2
            part.status = "oom"


def micro_batches_for(job: dict, fits: int) -> int | None:
    """The smallest valid ``train.micro_batches`` whose micro-batch is at most ``fits``."""
    world, _, _ = rank_batch(job)
    batch = int(job["train"]["batch_size"])
    return next((m for m in range(world, batch + 1, world) if batch % m == 0 and batch // m <= fits), None)
