"""One job through the canary: a training step, a checkpoint round trip, one batch per evaluation part.

Everything runs through the code the campaign runs: ``train_loop`` (steps = 1, the job's
precision, Adam, EMA, gradient clipping, ``torch.compile`` if set) writes the real
``checkpoint.pt``, which ``load_eval_model`` reads back (weights-only loader, header check,
sha256). Then, on the reloaded field, one batch of each evaluation part at its configured
size: ``nll`` and ``dt_nll`` (the during-training NLL, whose batch is ``nll_n``): one field
evaluation with its divergence (exact, or Hutchinson with the configured probes), i.e. one
NFE of the NLL's augmented ODE; ``sample``: one field evaluation without gradients at
``quality.batch_size`` (one NFE of dopri5); ``features``: the quality metric's feature
network on that batch (Inception for ``fid``; an untrained digits CNN for ``fd_digits``, the
same cost; none for ``w2_2d``). A whole ODE solve is not run: its memory is that of one NFE
and its time is NFE x that of one (``python -m fmcore.plan`` does that arithmetic).

The batch of a training step is one DDP rank's micro-batch: ``batch_size / micro_batches``
(``micro_batches`` defaults to the world size ``nodes x tasks_per_node``). ``max_batch``
caps every batch (the CPU default of the CLI). On CUDA a batch that runs out of memory is
halved until one fits; the check then names the largest that fits and the
``micro_batches`` / batch size to set.
"""

from __future__ import annotations

import gc
import io
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmcore.canary.memory import PeakMemory
from fmcore.canary.synthetic import SyntheticDataset

__all__ = ["JobCheck", "PartCheck", "check_job", "rank_batch"]


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
    world = int(res.get("nodes", 1)) * int(res.get("tasks_per_node", max(int(res.get("gpus_per_node", 0)), 1)))
    batch = int(tcfg["batch_size"])
    chunks = int(tcfg.get("micro_batches", world))
    if batch % chunks or chunks % world:
        raise ValueError(f"train.{job['dataset']}: batch_size={batch}, micro_batches={chunks}, world size {world}: "
                         "need micro_batches | batch_size and world size | micro_batches")
    return world, batch // chunks, chunks // world


def _first_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _fit(part: PartCheck, run: Callable[[int], float | None], device: torch.device, cap: int) -> None:
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
            _free(device)
            if batch == 1:
                raise
            batch //= 2
            part.status = "oom"


def _micro_batches_for(job: dict, fits: int) -> int | None:
    """The smallest valid ``train.micro_batches`` whose micro-batch is at most ``fits``."""
    world, _, _ = rank_batch(job)
    batch = int(job["train"]["batch_size"])
    return next((m for m in range(world, batch + 1, world) if batch % m == 0 and batch // m <= fits), None)


def _train(job: dict, data: object, device: torch.device, run_dir: Path, check: JobCheck,
           cap: int) -> Path:
    from fmcore.models import build_model
    from fmcore.objectives import build_objective
    from fmcore.paths import build_path
    from fmcore.training.loop import train_loop

    world, micro, accum = rank_batch(job)
    check.world_size, check.accumulation = world, accum
    part = PartCheck("train", micro, micro)
    out: dict[str, Path] = {}

    def step(batch: int) -> float:
        shutil.rmtree(run_dir, ignore_errors=True)
        tcfg = {**job["train"], "batch_size": batch, "micro_batches": 1, "log_every": 1, "checkpoint_every": 1,
                "lr_schedule": {**job["train"]["lr_schedule"], "warmup_steps": 0}}  # a 1-step run: no warm-up
        if isinstance(data, SyntheticDataset):
            data.length = max(data.length, batch)
        torch.manual_seed(int(tcfg["seed"]))
        path = build_path(job["path"])
        model = build_model(job["model"])
        start = time.perf_counter()
        result = train_loop(model=model, objective=build_objective(job["path"], path), dataset=data,
                            job={**job, "train": tcfg}, run_dir=run_dir, steps=1, device=device,
                            progress_stream=io.StringIO())
        check.save_seconds = round(time.perf_counter() - start - result.seconds, 3)
        out["checkpoint"] = result.checkpoint
        return result.seconds

    _fit(part, step, device, cap)
    check.parts.append(part)
    if part.status == "oom":
        need = _micro_batches_for(job, part.batch)
        check.advice.append(f"train: a micro-batch of {micro} does not fit, {part.batch} does: set "
                            f"train.{job['dataset']}.micro_batches: {need}" if need else
                            f"train: only a micro-batch of {part.batch} fits; no valid micro_batches")
    return out["checkpoint"]


def _probes(x: torch.Tensor, k: int, kind: str) -> torch.Tensor:
    shape = (k, *x.shape)
    if kind == "gaussian":
        return torch.randn(shape, device=x.device, dtype=x.dtype)
    return torch.randint(0, 2, shape, device=x.device).to(x.dtype) * 2.0 - 1.0


def _features(job: dict, synthetic: bool, device: torch.device) -> tuple[Callable | None, str]:
    """``(features(x) or None, note)`` for the job's quality metric."""
    from fmcore.metrics.fid import image_features, load_inception, model_to_uint8, resolve_inception_weights
    from fmcore.metrics.standin import DigitsCNN, digits_features

    q = job["evaluate"]["quality"]
    if q["metric"] == "w2_2d":
        return None, "the samples are the features (w2_2d)"
    if q["metric"] == "fd_digits":
        net = DigitsCNN(image_size=int(job["model"]["image_size"]))
        return lambda x: digits_features(net, model_to_uint8(x)), "untrained digits CNN (same cost)"
    try:
        weights = resolve_inception_weights(q.get("inception_weights"), job["dataset"])
    except ValueError as exc:
        if synthetic:
            return None, f"features skipped: {str(exc).split(';')[0]}"
        raise
    net = load_inception(weights, device)
    return lambda x: image_features(model_to_uint8(x), net, device), "Inception (clean-fid)"


def _evaluate(job: dict, checkpoint: Path, test: object, device: torch.device, check: JobCheck,
              cap: int, synthetic: bool) -> None:
    from fmcore.evaluation.model import load_eval_model
    from fmcore.likelihood import divergence

    cfg = job["evaluate"]
    start = time.perf_counter()
    ev = load_eval_model(job, checkpoint, use_ema=bool(cfg.get("ema", True)), device=device)
    check.load_seconds = round(time.perf_counter() - start, 3)
    check.checkpoint_bytes = checkpoint.stat().st_size
    shape = tuple(test.get_batch(np.arange(1)).shape[1:])

    def nll(section: dict) -> Callable[[int], None]:
        def run(batch: int) -> None:
            if isinstance(test, SyntheticDataset):
                test.length = max(test.length, batch)
            x = test.get_batch(np.arange(min(batch, len(test)))).to(device)
            probes = None if section.get("exact", True) else _probes(
                x, int(section.get("hutchinson_samples", 1)), str(section.get("probe", "rademacher")))
            with torch.enable_grad():
                x = x.requires_grad_(True)
                div = divergence(ev.v(torch.tensor(ev.path.t_max, device=device), x), x, probes)
            if not bool(div.isfinite().all()):
                raise FloatingPointError("non-finite divergence")
        return run

    samples: dict[str, torch.Tensor] = {}

    def sample(batch: int) -> None:
        noise = torch.randn(batch, *shape, device=device) * ev.path.prior_std
        with torch.no_grad():
            out = ev.v(torch.tensor(0.0, device=device), noise)
        if not bool(out.isfinite().all()):
            raise FloatingPointError("non-finite field at t = 0")
        samples["x"] = noise.clamp(-1.0, 1.0)

    dt = cfg.get("during_training") or {}
    section = cfg["nll"]
    jobs_parts: list[tuple[str, int, Callable[[int], None], str]] = [
        ("nll", int(cfg["nll"].get("batch_size", cfg["nll"]["n"])), nll(cfg["nll"]), "nll.batch_size")]
    if int(dt.get("nll_n", 0)) > 0:
        section = {**cfg["nll"], **({"exact": dt["nll_exact"]} if "nll_exact" in dt else {})}
        jobs_parts.append(("dt_nll", int(dt["nll_n"]), nll(section), "during_training.nll_n"))
    jobs_parts.append(("sample", int(cfg["quality"]["batch_size"]), sample, "quality.batch_size"))
    for name, wanted, run, key in jobs_parts:
        part = PartCheck(name, wanted, wanted)
        same = name == "dt_nll" and section == cfg["nll"] and check.parts[-1].batch == min(wanted, cap or wanted)
        if same and check.parts[-1].status == "ok":  # the cap made it the nll batch again: not re-run
            part.batch, part.seconds, part.note = check.parts[-1].batch, check.parts[-1].seconds, "= nll"
            check.parts.append(part)
            continue
        _fit(part, run, device, cap)
        check.parts.append(part)
        if part.status == "oom":
            check.advice.append(f"{name}: a batch of {wanted} does not fit, {part.batch} does: set "
                                f"evaluate.{job['dataset']}.{key} <= {part.batch}")
    features, note = _features(job, synthetic, device)
    q_metric = cfg["quality"]["metric"]
    wanted = int(cfg["quality"]["batch_size"])
    part = PartCheck("features", wanted, check.parts[-1].batch, note=note)

    def featurize(batch: int) -> None:
        features(samples["x"][:batch])

    if features is None:
        part.status = "skip" if q_metric != "w2_2d" else "n/a"
    else:  # on the batch the sampler produced (the cap or its OOM halving already applied)
        _fit(part, featurize, device, check.parts[-1].batch)
    check.parts.append(part)


def check_job(job: dict, device: torch.device, *, synthetic: bool, workdir: Path, max_batch: int = 0,
              train_data: object | None = None, test_data: object | None = None) -> JobCheck:
    """Run the canary on one resolved job (``fmcore.config.resolve_job``); never raises for the job's own
    failures: they are the returned check's ``error`` (first line).

    Args:
        job: the resolved job.
        device: where it runs.
        synthetic: random data of the dataset's shape instead of the prepared splits.
        workdir: scratch folder; the job's checkpoint is written under it and removed after.
        max_batch: cap on every batch (0: none).
        train_data: the prepared training split (real data; loaded here when None).
        test_data: the prepared test split (real data; loaded here when None).
    """
    from fmcore.plan.profile import sample_shape

    key = f"{job['dataset']}-{job['method']}"
    check = JobCheck(key, job["dataset"], job["method"], str(device))
    memory = PeakMemory(device)
    run_dir = Path(workdir) / key
    _free(device)
    memory.reset()
    try:
        if synthetic:
            image = job["model"]["arch"] == "unet"
            train_data = SyntheticDataset(sample_shape(job["model"]), 1, image)
            test_data = SyntheticDataset(sample_shape(job["model"]), 1, image)
        elif train_data is None or test_data is None:
            from fmcore.data import load_split

            train_data = load_split(job["paths"]["data_dir"], "train")
            test_data = load_split(job["paths"]["data_dir"], "test")
        checkpoint = _train(job, train_data, device, run_dir, check, max_batch)
        _evaluate(job, checkpoint, test_data, device, check, max_batch, synthetic)
        check.ok = True
    except Exception as exc:  # noqa: BLE001 - the canary reports any failure of the job in one line
        check.error = _first_line(exc)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        check.peak_bytes, check.memory_kind = memory.peak_bytes(), memory.kind
        _free(device)
    check.capped_at = max_batch if max_batch and any(p.wanted > max_batch for p in check.parts) else 0
    return check
