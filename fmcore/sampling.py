"""Sampling by solving the flow ODE dx/dt = v(t, x) from t = 0 (noise) to t = 1 (data).

.. math::

    x_1 = x_0 + int_0^1 v(t, x_t) dt,   x_0 ~ N(0, prior_std^2 I).

Solvers come from ``torchdiffeq.odeint``: ``dopri5`` (adaptive Dormand-Prince 5(4)) and the
fixed-grid ``euler`` (1 evaluation per step), ``midpoint`` (2) and ``rk4`` (4; torchdiffeq's
``rk4`` is Kutta's 3/8-rule variant of the classic fourth-order method, same order and cost).
The number of function evaluations (NFE) is counted by wrapping v, never computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchdiffeq import odeint

from fmcore.paths import GaussianPath

__all__ = ["METHODS", "FIXED_STEP_METHODS", "CountedField", "sample", "sample_path"]

Field = Callable[[Tensor, Tensor], Tensor]
FIXED_STEP_METHODS = ("euler", "midpoint", "rk4")
METHODS = ("dopri5",) + FIXED_STEP_METHODS


class CountedField:
    """Wraps v(t, x) and counts its calls in ``nfe``; passes t as a 0-dim tensor of x's dtype."""

    def __init__(self, v: Field) -> None:
        self.v = v
        self.nfe = 0

    def __call__(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        return self.v(torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(()), x)


def _check_grid(t_grid: Tensor | None, x_0: Tensor) -> Tensor:
    if t_grid is None:
        return torch.tensor([0.0, 1.0], dtype=x_0.dtype, device=x_0.device)
    t_grid = torch.as_tensor(t_grid).to(dtype=x_0.dtype, device=x_0.device)
    if t_grid.dim() != 1 or t_grid.numel() < 2:
        raise ValueError(f"t_grid must be a 1-D tensor with >= 2 times, got shape {tuple(t_grid.shape)}")
    if not bool((t_grid[1:] > t_grid[:-1]).all()):
        raise ValueError(f"t_grid must be strictly increasing, got {t_grid.tolist()}")
    return t_grid


def sample(v: Field, x0: Tensor, method: str = "dopri5", atol: float = 1e-5, rtol: float = 1e-5,
           steps: int | None = None, t_grid: Tensor | None = None) -> tuple[Tensor, int]:
    """Integrate dx/dt = v(t, x) from t_grid[0] to t_grid[-1] (default 0 -> 1), without autograd.

    Args:
        v: field ``v(t, x)``, t a 0-dim float tensor, x of shape [B, ...].
        x0: initial points at t_grid[0], shape [B, ...] (already scaled by the source's std).
        method: ``dopri5`` | ``euler`` | ``midpoint`` | ``rk4``.
        atol: absolute tolerance (dopri5 only).
        rtol: relative tolerance (dopri5 only).
        steps: number of uniform steps over [t_grid[0], t_grid[-1]] (fixed-step methods, required).
            Output times that are not on the step grid are linearly interpolated by torchdiffeq.
        t_grid: optional strictly increasing 1-D tensor of output times.

    Returns:
        ``(x, nfe)``: x is x at t_grid[-1], shape [B, ...], or with ``t_grid`` given the whole
        trajectory, shape [len(t_grid), B, ...]; nfe is the number of calls of v.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {list(METHODS)}")
    grid = _check_grid(t_grid, x0)
    options: dict[str, Any] = {}
    if method in FIXED_STEP_METHODS:
        if steps is None or int(steps) != steps or steps < 1:
            raise ValueError(f"method={method!r} needs steps >= 1 (an integer), got steps={steps!r}")
        n = int(steps)
        options["grid_constructor"] = lambda _f, _y0, t: torch.linspace(
            float(t[0]), float(t[-1]), n + 1, dtype=t.dtype, device=t.device)
    elif steps is not None:
        raise ValueError(f"steps={steps!r} is only for fixed-step methods {list(FIXED_STEP_METHODS)}")
    else:
        # torchdiffeq's adaptive steps may overshoot the last output time and interpolate back;
        # a diffusion path's field is undefined past t_max (sigma_t of VP is sqrt(<0) there), so
        # the last step must land exactly on it.
        options["step_t"] = grid[-1:]
    field = CountedField(v)
    with torch.no_grad():
        traj = odeint(field, x0, grid, method=method, atol=atol, rtol=rtol, options=options)
    return (traj if t_grid is not None else traj[-1]), field.nfe


def sample_path(v: Field, path: GaussianPath, noise: Tensor, **kwargs: Any) -> tuple[Tensor, int]:
    """:func:`sample` for a model trained on ``path``: starts from noise * prior_std and
    ends at ``path.t_max`` (1 - eps for diffusion paths, where sigma_1 = 0 is singular).

    Args:
        v: field of the model (see :func:`fmcore.paths.velocity_field`).
        path: its probability path.
        noise: standard normal noise, shape [B, ...].
        **kwargs: passed to :func:`sample`; ``t_grid`` defaults to [0, path.t_max] and, if given,
            must end at or before path.t_max.

    Returns:
        As :func:`sample`.
    """
    t_grid = kwargs.pop("t_grid", None)
    want_traj = t_grid is not None
    if t_grid is None:
        t_grid = torch.tensor([0.0, path.t_max])
    elif float(torch.as_tensor(t_grid)[-1]) > path.t_max + 1e-12:
        raise ValueError(f"t_grid ends at {float(torch.as_tensor(t_grid)[-1])} > path.t_max={path.t_max}")
    x, nfe = sample(v, noise * path.prior_std, t_grid=t_grid, **kwargs)
    return (x if want_traj else x[-1]), nfe
