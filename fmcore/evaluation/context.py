"""What every evaluation part needs: the job, its field, the test split and seeded noise."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmcore.data import PreparedDataset
from fmcore.evaluation.model import EvalModel
from fmcore.evaluation.quality import QualityMetric

__all__ = [
    "EvalContext",
    "PartFailure",
    "PartResult",
    "SolverFailure",
    "guard_solver",
    "resolve_device",
    "seeded_generator",
    "standard_noise",
]


class PartFailure(RuntimeError):
    """An evaluation part could not be computed for this run; recorded, the others go on."""


class SolverFailure(PartFailure):
    """An ODE solve of the trained field failed (step-size underflow, non-finite values)."""


def guard_solver(what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN201 - thin wrapper
    """Call ``fn``; turn torchdiffeq's step-size assertion into :class:`SolverFailure` naming ``what``."""
    try:
        out = fn(*args, **kwargs)
    except AssertionError as exc:  # torchdiffeq: 'underflow in dt ...'
        raise SolverFailure(
            f"{what}: ODE solver failed ({exc}); the field is too stiff for these tolerances"
        ) from None
    first = out[0] if isinstance(out, tuple) else out
    if isinstance(first, torch.Tensor) and not bool(torch.isfinite(first).all()):
        raise SolverFailure(f"{what}: ODE solution is not finite (diverged)")
    return out


def seeded_generator(seed: int, stream: str, index: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, stream, index) by sha256: independent streams per
    evaluation part and batch, so a resumed run draws exactly the same numbers."""
    digest = hashlib.sha256(f"{seed}/{stream}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def standard_noise(n: int, shape: tuple[int, ...], seed: int, stream: str, index: int = 0,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """x_0 ~ N(0, I) of shape [n, *shape] from :func:`seeded_generator` (scaled later by prior_std).

    Drawn on the CPU and then moved to ``device``, so the numbers do not depend on the device.
    """
    return torch.randn((n, *shape), generator=seeded_generator(seed, stream, index)).to(device)


def resolve_device(name: str | None) -> torch.device:
    """``evaluate.<ds>.device``: ``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda[:i]``.

    Raises:
        ValueError: CUDA requested but not available, or an unknown name.
    """
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"evaluate.*.device: {name!r}, expected auto, cpu or cuda[:i]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"evaluate.*.device: {name!r} but CUDA is not available here (use auto or cpu)")
    return dev


@dataclass
class EvalContext:
    """One (dataset, method) evaluation.

    Attributes:
        job: resolved job (``fmcore.config.resolve_job``).
        model: the final checkpoint's EMA field.
        quality: the sample-quality metric (None until needed).
        test: the test split (dequantizing loader for images).
        eval_dir: ``results/<exp>/<ds>/<method>/eval``.
    """

    job: dict
    model: EvalModel
    quality: QualityMetric | None
    test: PreparedDataset
    eval_dir: Path

    @property
    def cfg(self) -> dict:
        """The ``evaluate.<dataset>`` section."""
        return self.job["evaluate"]

    @property
    def seed(self) -> int:
        """``evaluate.<dataset>.seed``."""
        return int(self.cfg.get("seed", 0))

    def tolerances(self, section: str, fallback: str = "nfe") -> dict[str, float]:
        """dopri5 ``atol``/``rtol`` of a figure part: ``evaluate.<ds>.<section>.atol/rtol``
        where given, else the ``fallback`` section's (by default Table 1's NFE tolerance)."""
        own, base = self.cfg.get(section) or {}, self.cfg[fallback]
        return {k: float(own.get(k, base[k])) for k in ("atol", "rtol")}

    @property
    def is_image(self) -> bool:
        """uint8 image data (bits/dim) rather than 2D points (nats)."""
        return bool(self.test.is_image)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (2,) or (1, 8, 8)."""
        return tuple(int(s) for s in self.test.array.shape[1:])


@dataclass
class PartResult:
    """Output of one evaluation part, cached as ``<eval_dir>/<part>.json`` (+ ``.npz``).

    Attributes:
        metrics: final metrics logged at step 0 (e.g. ``nll_bpd``).
        history: (name, step, value) triples (Fig. 5: training step; Fig. 7: NFE).
        arrays: arrays saved to ``<part>.npz`` and logged as an MLflow artifact.
        info: JSON-able extras (skipped budgets, counts) kept in the part's json.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    history: list[tuple[str, int, float]] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
