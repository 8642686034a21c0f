"""Time one training step (forward + backward + Adam) of a model config on the CPU.

Used by ``python -m fmcore.models --params P --benchmark`` to check that the smoke models fit
the CPU budget (docs/models.md). The loss is the CFM regression ||v_theta(t, x_t) - u||^2 on
random tensors: the cost of a step does not depend on the data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from fmcore.models.factory import build_model, validate_model_config

__all__ = ["StepTiming", "time_train_step"]


@dataclass(frozen=True)
class StepTiming:
    """Per-step cost in milliseconds (best of the repeats): wall clock and process CPU time."""

    batch_size: int
    wall_ms: float
    cpu_ms: float
    forward_wall_ms: float


def _input_shape(cfg: dict, batch_size: int) -> tuple[int, ...]:
    if cfg["arch"] == "mlp":
        return (batch_size, cfg["dim"])
    return (batch_size, cfg["in_channels"], cfg["image_size"], cfg["image_size"])


def time_train_step(
    model_cfg: dict, batch_size: int, steps: int = 10, repeats: int = 3, seed: int = 0
) -> StepTiming:
    """Measure forward + backward + Adam step, and a no-grad forward, of ``build_model(model_cfg)``.

    Args:
        model_cfg: a model section (see ``fmcore.models.build_model``).
        batch_size: B of the random batch.
        steps: steps per timed repeat (after 2 warm-up steps).
        repeats: timed repeats; the fastest is reported (the machine may be shared).
        seed: seed of the random weights and batch.

    Returns:
        The :class:`StepTiming`.
    """
    if batch_size < 1 or steps < 1 or repeats < 1:
        raise ValueError(
            f"batch_size, steps, repeats: expected integers >= 1, got {batch_size}, {steps}, {repeats}"
        )
    cfg = validate_model_config(model_cfg)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(cfg)
    x = torch.randn(_input_shape(cfg, batch_size), generator=gen)
    u = torch.randn(x.shape, generator=gen)
    t = torch.rand(batch_size, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (model(x, t) - u).pow(2).mean().backward()
        opt.step()

    for _ in range(2):
        step()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        walls.append((time.perf_counter() - w0) / steps * 1e3)
        cpus.append((time.process_time() - c0) / steps * 1e3)
    with torch.no_grad():
        w0 = time.perf_counter()
        for _ in range(steps):
            model(x, t)
        fwd = (time.perf_counter() - w0) / steps * 1e3
    return StepTiming(batch_size, round(min(walls), 2), round(min(cpus), 2), round(fwd, 2))
