"""What every check of ``benchmarks/gpu_check.py`` shares: result rows, sizes per mode, the table.

A check returns :class:`Row` s. ``status`` is ``pass`` / ``fail`` (the row has a criterion,
stated in ``criterion``), ``skip`` (not run here, ``note`` says why: never counted as a pass)
or ``info`` (a measured number without a criterion).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from fmcore.tracking import NullTracker

REPO = Path(__file__).resolve().parents[2]
STATUSES = ("pass", "fail", "skip", "info")


@dataclass
class Row:
    """One line of the table."""

    check: str  # which check (train, resume, eval, sample)
    metric: str  # what was measured, with its unit
    value: Any  # the measured value (None when skipped)
    status: str  # pass | fail | skip | info
    criterion: str = ""  # the pass/fail rule, if any
    note: str = ""  # how it was measured, or why it was skipped

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r}: expected one of {STATUSES}")


def judged(check: str, metric: str, value: Any, ok: bool, criterion: str, note: str = "") -> Row:
    """A row with a criterion: pass if ``ok``."""
    return Row(check, metric, value, "pass" if ok else "fail", criterion, note)


def finite(*values: float) -> bool:
    """All values are finite numbers."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# The stand-in for the CPU of the paper's CIFAR-10 U-Net: the same architecture, toy widths.
TOY_UNET = {"image_size": 8, "model_channels": 16, "num_res_blocks": 1, "channel_mult": [1, 2],
            "num_heads": 2, "num_head_channels": -1, "attention_resolutions": [4], "norm_groups": 8}


@dataclass(frozen=True)
class Sizes:
    """How big each check is: the paper's sizes on a GPU, toy sizes with ``--cpu``."""

    cpu: bool
    window: int  # train_loop log_every: steps per timed window
    windows: int  # timed windows after the first (warm-up, compilation)
    sample_batch: int  # dopri5 sampling throughput batch (the paper's evaluation batch: 500)
    resume_steps: int  # steps of the SIGTERM/resume run (digits)
    resume_checkpoint_every: int
    resume_log_every: int
    resume_model: dict = field(default_factory=dict)  # overrides of params/smoke.yaml models.digits
    n_samples: int = 64  # evaluation: samples drawn (dopri5) and featurised
    n_reference: int = 256  # evaluation: training images for the reference statistics
    n_nll: int = 32  # evaluation: test images for the Hutchinson NLL

    @staticmethod
    def for_mode(cpu: bool) -> Sizes:
        """The sizes of one mode."""
        if cpu:
            return Sizes(cpu=True, window=4, windows=2, sample_batch=4, resume_steps=60,
                         resume_checkpoint_every=20, resume_log_every=10,
                         resume_model={"model_channels": 8, "norm_groups": 4, "num_heads": 1},
                         n_samples=32, n_reference=128, n_nll=8)
        return Sizes(cpu=False, window=10, windows=3, sample_batch=500, resume_steps=2000,
                     resume_checkpoint_every=200, resume_log_every=25, n_samples=1000, n_reference=1437,
                     n_nll=200)

    def unet(self, paper_cfg: dict) -> dict:
        """The CIFAR-10 U-Net config to time: the paper's on a GPU, TOY_UNET over it on the CPU."""
        return {**copy.deepcopy(paper_cfg), **TOY_UNET} if self.cpu else copy.deepcopy(paper_cfg)


class RecordingTracker(NullTracker):
    """A tracker that keeps what ``train_loop`` logs (loss, lr, samples_per_s per window) in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, values: dict[str, float], step: int) -> None:  # noqa: D102
        self.records.append((int(step), {k: float(v) for k, v in values.items()}))


class SyntheticImages:
    """A stand-in training set for throughput: fixed random images in [-1, 1] (the content does
    not change the cost of a step; CIFAR-10 itself is not available here). Same interface as
    ``fmcore.data.PreparedDataset`` for ``train_loop``: ``len()``, ``get_batch``, ``generator``."""

    def __init__(self, n: int, channels: int, size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, channels, size, size, generator=g) * 2.0 - 1.0
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.x)

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows ``indices`` [B] -> [B, C, H, W]."""
        return self.x[indices]


def device_info(device: torch.device) -> dict[str, Any]:
    """Name and software of the device the checks ran on."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, capability=f"{props.major}.{props.minor}")
        try:
            v = torch.cuda.nccl.version()  # a tuple in recent torch, an int in old ones
            info["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except (AttributeError, RuntimeError):
            info["nccl"] = None
    else:
        import platform

        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return info


def format_value(v: Any) -> str:
    """Numbers with 4 significant digits, the rest as text."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[Row]) -> str:
    """The rows as an aligned plain-text table (also valid Markdown)."""
    head = ["check", "metric", "value", "status", "criterion", "note"]
    body = [[r.check, r.metric, format_value(r.value), r.status.upper(), r.criterion, r.note] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in [head] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    """The rows as plain dicts."""
    return [asdict(r) for r in rows]
