"""Exact likelihood of a flow through the instantaneous change of variables.

For dx/dt = v(t, x) (Chen et al. 2018, Grathwohl et al. 2019; Lipman et al. 2023, Sec. 6):

.. math::

    d/dt log p_t(x_t) = -div v(t, x_t)
    log p_1(x_1) = log p_0(x_0) - int_0^1 div v(t, x_t) dt,   p_0 = N(0, prior_std^2 I).

We integrate the augmented state [x, l] with dl/dt = div v backwards from t = t1 (x = x_1,
l = 0) to t = 0 with ``torchdiffeq``'s dopri5, so l(0) = -int_0^{t1} div v dt and
log p_1(x_1) = log p_0(x(0)) + l(0).

The divergence is exact (one vector-Jacobian product per dimension,
div v = sum_i d v_i / d x_i) or Hutchinson's estimate div v ~ mean_k e_k^T (dv/dx) e_k with
Rademacher or Gaussian probes e_k drawn once and kept fixed for the whole solve.
Both assume the field treats batch elements independently (no batch norm in train mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from fmcore.paths import GaussianPath

__all__ = ["SCALES", "divergence", "log_prob", "log_prob_path", "bits_per_dim", "gaussian_log_density"]

Field = Callable[[Tensor, Tensor], Tensor]
SCALES = {"minus_one_one": 2.0, "zero_one": 1.0}  # |dz/dy| per dimension, y = (x + u) / 256


def gaussian_log_density(x: Tensor, std: float = 1.0) -> Tensor:
    """log N(x; 0, std^2 I) per sample, shape [B] for x of shape [B, ...]."""
    d = x[0].numel()
    sq = x.flatten(1).pow(2).sum(dim=1)
    return -0.5 * sq / std**2 - d * math.log(std) - 0.5 * d * math.log(2.0 * math.pi)


def divergence(out: Tensor, x: Tensor, probes: Tensor | None = None) -> Tensor:
    """div_x out, exact (probes None) or Hutchinson (probes [K, B, ...]); shape [B].

    Args:
        out: v(t, x), shape [B, ...], with a graph back to x.
        x: the input that requires grad, shape [B, ...].
        probes: Hutchinson probe vectors, shape [K, B, ...], or None for the exact trace.

    Returns:
        Divergence per sample, shape [B].
    """
    if not out.requires_grad:  # the field does not depend on x
        return torch.zeros(out.shape[0], dtype=out.dtype, device=out.device)
    if probes is None:
        flat = out.flatten(1)
        d = flat.shape[1]
        div = torch.zeros(out.shape[0], dtype=out.dtype, device=out.device)
        for i in range(d):
            (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < d - 1, materialize_grads=True)
            div = div + g.flatten(1)[:, i]
        return div
    total = torch.zeros(out.shape[0], dtype=out.dtype, device=out.device)
    for k in range(probes.shape[0]):
        (g,) = torch.autograd.grad(
            out, x, grad_outputs=probes[k], retain_graph=k < probes.shape[0] - 1, materialize_grads=True
        )
        total = total + (g * probes[k]).flatten(1).sum(dim=1)
    return total / probes.shape[0]


def _draw_probes(x1: Tensor, k: int, probe: str, generator: torch.Generator | None) -> Tensor:
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe={probe!r}: expected 'rademacher' or 'gaussian'")
    if int(k) != k or k < 1:
        raise ValueError(f"hutchinson_samples={k!r}: expected an integer >= 1")
    dev = generator.device if generator is not None else torch.device("cpu")
    shape = (int(k),) + tuple(x1.shape)
    if probe == "gaussian":
        e = torch.randn(shape, generator=generator, device=dev, dtype=x1.dtype)
    else:
        e = torch.randint(0, 2, shape, generator=generator, device=dev).to(x1.dtype) * 2.0 - 1.0
    return e.to(x1.device)


def log_prob(v: Field, x1: Tensor, exact: bool = True, atol: float = 1e-5, rtol: float = 1e-5,
             hutchinson_samples: int = 1, generator: torch.Generator | None = None,
             probe: str = "rademacher", t1: float = 1.0, prior_std: float = 1.0) -> tuple[Tensor, int]:
    """log p_1(x1) in nats under the flow of v from N(0, prior_std^2 I) at t = 0.

    Args:
        v: field ``v(t, x)``, t a 0-dim tensor, x of shape [B, ...].
        x1: points, shape [B, ...].
        exact: exact divergence (D vector-Jacobian products per evaluation) or Hutchinson.
        atol: dopri5 absolute tolerance.
        rtol: dopri5 relative tolerance.
        hutchinson_samples: probes per sample (Hutchinson only), fixed for the whole solve.
        generator: RNG for the probes.
        probe: ``"rademacher"`` or ``"gaussian"``.
        t1: time x1 lives at (1, or path.t_max for diffusion paths).
        prior_std: std of the Gaussian source at t = 0 (sigma_max for VE).

    Returns:
        ``(logp_nats [B], nfe)``; nfe counts evaluations of v (each with its divergence).
    """
    if not 0.0 < t1 <= 1.0:
        raise ValueError(f"t1={t1} is outside (0, 1]")
    if prior_std <= 0:
        raise ValueError(f"prior_std={prior_std} must be > 0")
    x1 = x1.detach()
    probes = None if exact else _draw_probes(x1, hutchinson_samples, probe, generator)
    nfe = 0

    def augmented(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        with torch.enable_grad():
            x = state[0].detach().requires_grad_(True)
            out = v(t.to(x.dtype).reshape(()), x)
            div = divergence(out, x, probes)
        return out.detach(), div.detach()

    t = torch.tensor([t1, 0.0], dtype=x1.dtype, device=x1.device)
    l1 = torch.zeros(x1.shape[0], dtype=x1.dtype, device=x1.device)
    with torch.no_grad():
        # step_t: land exactly on t = 0 instead of evaluating v past the source end and interpolating.
        xs, ls = odeint(augmented, (x1, l1), t, method="dopri5", atol=atol, rtol=rtol,
                        options={"step_t": t[-1:]})
    return gaussian_log_density(xs[-1], prior_std) + ls[-1], nfe


def log_prob_path(v: Field, path: GaussianPath, x1: Tensor, **kwargs: object) -> tuple[Tensor, int]:
    """:func:`log_prob` with t1 = path.t_max and prior_std = path.prior_std."""
    return log_prob(v, x1, t1=path.t_max, prior_std=path.prior_std, **kwargs)  # type: ignore[arg-type]


def bits_per_dim(logp_nats: Tensor, num_dims: int, scale: str = "minus_one_one") -> Tensor:
    """Bits per dimension of 8-bit data from the model log-density in model space.

    Derivation. Pixels x in {0, ..., 255}^D are dequantized as y = (x + u)/256, u ~ U[0, 1)^D,
    and mapped to model space z = c y + b (c = 2, b = -1 for ``minus_one_one``; c = 1 for
    ``zero_one``). Change of variables: log p_y(y) = log p_z(z) + D log c. The continuous
    variable w = x + u = 256 y has log p_w(w) = log p_y(y) - D log 256, and Jensen gives the
    discrete bound log P(x) >= E_u[log p_w(x + u)] (Theis et al. 2016). Hence

    .. math::

        bpd = -log P(x) / (D ln 2) <= -(log p_z(z) + D log c - D log 256) / (D ln 2)
            = -log p_z(z) / (D ln 2) - log2(c) + 8,

    i.e. + 7 for [-1, 1] and + 8 for [0, 1]. A uniform model on the data range gives exactly
    8 bits/dim for either scaling.

    Args:
        logp_nats: log p_z(z) in nats, any shape (usually [B]).
        num_dims: D, the number of dimensions per sample (C * H * W).
        scale: ``"minus_one_one"`` or ``"zero_one"``.

    Returns:
        Bits per dimension, same shape as logp_nats.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: expected one of {sorted(SCALES)}")
    if int(num_dims) != num_dims or num_dims < 1:
        raise ValueError(f"num_dims={num_dims!r}: expected an integer >= 1")
    return -logp_nats / (num_dims * math.log(2.0)) - math.log2(SCALES[scale]) + 8.0
