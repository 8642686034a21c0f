"""Learning-rate schedules of the paper (docs/paper.md, Table 3): polynomial decay with linear
warmup, and constant.

Polynomial decay with warmup, for optimizer update ``s`` (0-based) of ``T`` in total:

.. math::

    \\mathrm{lr}(s) = \\begin{cases}
      \\mathrm{lr_0} + (\\mathrm{lr} - \\mathrm{lr_0})\\, s / W & s < W \\\\
      \\mathrm{lr_{min}} + (\\mathrm{lr} - \\mathrm{lr_{min}})\\,
        \\left(1 - \\frac{s - W}{T - W}\\right)^{p} & s \\ge W
    \\end{cases}

with warmup start ``lr_0 = 1e-8``, warmup length ``W`` (``warmup_steps``), power ``p`` and
floor ``lr_min`` (the paper decays back to 1e-8). ``constant`` keeps ``lr`` after an
optional linear warmup of the same form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["WARMUP_START_LR", "build_scheduler", "lr_at"]

WARMUP_START_LR = 1e-8


def lr_at(step: int, lr: float, schedule: Mapping[str, Any], total_steps: int) -> float:
    """The learning rate of optimizer update ``step`` (0-based) of ``total_steps``.

    Args:
        step: update index, 0 <= step.
        lr: peak learning rate (params ``train.lr``).
        schedule: params ``train.lr_schedule``: ``kind`` (poly | constant), ``warmup_steps``,
            ``power`` (poly, default 1), ``lr_min`` (poly, default 1e-8).
        total_steps: number of updates T.

    Raises:
        ValueError: unknown kind, or warmup not shorter than the run for ``poly``.
    """
    kind = schedule.get("kind")
    warmup = int(schedule.get("warmup_steps", 0))
    if kind not in ("poly", "constant"):
        raise ValueError(f"train.lr_schedule.kind={kind!r}: expected 'poly' or 'constant'")
    if kind == "poly" and warmup >= total_steps:
        raise ValueError(f"train.lr_schedule.warmup_steps={warmup}: must be < train.steps={total_steps}")
    if warmup and step < warmup:
        return WARMUP_START_LR + (lr - WARMUP_START_LR) * step / warmup
    if kind == "constant":
        return lr
    lr_min = float(schedule.get("lr_min", WARMUP_START_LR))
    power = float(schedule.get("power", 1.0))
    frac = min(1.0, (step - warmup) / (total_steps - warmup))
    return lr_min + (lr - lr_min) * (1.0 - frac) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, lr: float, schedule: Mapping[str, Any],
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` giving :func:`lr_at` (the optimizer's base lr must equal ``lr``).

    Call ``scheduler.step()`` after each ``optimizer.step()``.
    """
    lr_at(0, lr, schedule, total_steps)  # validate now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, lr, schedule, total_steps) / lr)
