"""Sample paths: trajectories with a straightness measure (Fig. 6) and snapshots (Fig. 4).

Both integrate the final EMA field with dopri5 (the section's ``atol/rtol`` where given, else
``evaluate.<ds>.nfe``'s) from
noise drawn with the dataset's evaluation seed and a fixed stream name, so every method of
a dataset starts from the *same* x_0 (scaled by the path's prior std: sigma_max for VE).
Times are clipped to ``path.t_max`` (1 - eps for diffusion paths); the npz records the
times actually used.

Straightness (Fig. 6), with x_0 = x_{t_0}, x_1 = x_{t_max} and s_k = t_k / t_max:

.. math::

    S = \\frac{1}{N K} \\sum_{i, k} \\frac{\\lVert x^i_{t_k} - ((1 - s_k) x^i_0 + s_k x^i_1) \\rVert}
        {\\lVert x^i_1 - x^i_0 \\rVert}

over the N paths and the K interior output times: 0 for a path that moves along the chord
x_1 - x_0 at constant speed (what the conditional OT path prescribes), larger the more the
path bends or changes speed.
"""

from __future__ import annotations

import numpy as np
import torch

from fmcore.evaluation.context import EvalContext, PartResult, guard_solver, standard_noise
from fmcore.sampling import sample_path

__all__ = ["run_snapshots", "run_trajectories", "straightness"]


def straightness(traj: torch.Tensor, t: torch.Tensor) -> tuple[float, np.ndarray]:
    """S above for a trajectory [P, N, ...] at times t [P]; also the mean deviation per time [P]."""
    traj, t = traj.double(), t.double()
    x0, x1 = traj[0], traj[-1]
    s = ((t - t[0]) / (t[-1] - t[0])).reshape(-1, *([1] * (traj.dim() - 1)))
    chord = (1 - s) * x0 + s * x1
    dev = (traj - chord).flatten(2).norm(dim=2) / (x1 - x0).flatten(1).norm(dim=1).clamp_min(1e-12)
    per_time = dev.mean(dim=1)
    return float(per_time[1:-1].mean()) if len(t) > 2 else 0.0, per_time.numpy()


def _grid(ctx: EvalContext, times: list[float]) -> torch.Tensor:
    t_max = ctx.model.path.t_max
    t = torch.tensor([min(float(x), t_max) for x in times], dtype=torch.float64)
    if len(t) < 2 or not bool((t[1:] > t[:-1]).all()):
        raise ValueError(
            f"evaluate.{ctx.job['dataset']}: output times {times} must be increasing (>= 2 values)"
        )
    return t


def _solve(ctx: EvalContext, n: int, t: torch.Tensor, stream: str) -> tuple[torch.Tensor, int]:
    """The dopri5 trajectory of ``n`` samples at times ``t``, and its NFE (for the cost planner)."""
    tol = ctx.tolerances(stream)  # the section is named like the stream
    noise = standard_noise(n, ctx.sample_shape, ctx.seed, stream, device=ctx.model.device)
    traj, nfe = guard_solver(f"{stream} {ctx.job['dataset']}/{ctx.job['method']}", sample_path,
                           ctx.model.v, ctx.model.path, noise, method="dopri5", t_grid=t,
                          atol=float(tol["atol"]), rtol=float(tol["rtol"]))  # fmt: skip
    return traj.cpu(), int(nfe)


def run_trajectories(ctx: EvalContext) -> PartResult:
    """Paths at ``trajectories.points`` uniform times in [0, t_max] from the shared noise."""
    cfg = ctx.cfg["trajectories"]
    points = int(cfg["points"])
    if points < 3:
        raise ValueError(f"evaluate.{ctx.job['dataset']}.trajectories.points: {points}, expected >= 3")
    t = torch.linspace(0.0, ctx.model.path.t_max, points, dtype=torch.float64)
    traj, nfe = _solve(ctx, int(cfg["n"]), t, "trajectories")
    s, per_time = straightness(traj, t)
    return PartResult(
        metrics={"straightness": s, "trajectories/nfe": float(nfe)},
        arrays={"t": t.numpy(), "x": traj.float().numpy(), "deviation": per_time,
                "straightness": np.array(s)},
    )


def run_snapshots(ctx: EvalContext) -> PartResult:
    """Samples at ``snapshots.t`` (Fig. 4: t = 0, 1/3, 2/3, 1) from the shared noise."""
    cfg = ctx.cfg["snapshots"]
    t = _grid(ctx, list(cfg["t"]))
    traj, nfe = _solve(ctx, int(cfg["n"]), t, "snapshots")
    return PartResult(metrics={"snapshots/nfe": float(nfe)}, arrays={"t": t.numpy(), "x": traj.float().numpy()})
