"""Gaussian conditional probability paths (Lipman et al. 2023, Sec. 4).

Time convention of the paper: t = 0 is noise x_0 ~ N(0, prior_std^2 I), t = 1 is data x_1.
Every path here is affine in (x_0, x_1):

.. math::

    p_t(x | x_1) = N(x; mu_t(x_1), sigma_t^2 I),   mu_t(x_1) = a_t x_1,
    psi_t(x_0) = sigma_t x_0 + mu_t(x_1)                                     (Eq. 11)
    u_t(x | x_1) = sigma_t'/sigma_t (x - mu_t(x_1)) + mu_t'(x_1)            (Theorem 3, Eq. 15)

evaluated at x = psi_t(x_0) this is u_t = sigma_t' x_0 + a_t' x_1 (Eq. 13).
Subclasses supply only a_t, sigma_t and their time derivatives.

Conversions for a model of the marginal path x_t = a_t x_1 + sigma_t eps (eps ~ N(0, I)).
With eps_hat(x, t) = E[eps | x_t = x] and the score s(x, t) = grad log p_t(x) = -eps_hat/sigma_t,
the marginal velocity u_t(x) = E[a_t' x_1 + sigma_t' eps | x_t = x] is, using
x_1 = (x - sigma_t eps)/a_t,

.. math::

    u_t(x) = (a_t'/a_t) x + (sigma_t' - sigma_t a_t'/a_t) eps_hat
           = (a_t'/a_t) x - (sigma_t' sigma_t - sigma_t^2 a_t'/a_t) s(x, t).

This is the probability-flow ODE of the diffusion written in FM time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianPath", "PathSample", "as_time"]


def as_time(t: float | Tensor, x: Tensor) -> Tensor:
    """Broadcast a time (python float, 0-dim or [B] tensor) to shape [B, 1, ..., 1] like ``x``.

    Args:
        t: time(s) in [0, 1]; a scalar or a tensor of shape [B].
        x: reference tensor of shape [B, ...].

    Returns:
        Tensor of shape [B, 1, ..., 1] (or [1, ..., 1] for a scalar t) with x's dtype/device.
    """
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.numel() == 1:
        return t.reshape([1] * x.dim())
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"time has shape {tuple(t.shape)}, expected [] or [{x.shape[0]}] for x {tuple(x.shape)}")
    return t.reshape([-1] + [1] * (x.dim() - 1))


@dataclass(frozen=True)
class PathSample:
    """One draw from a conditional path.

    Attributes:
        x_0: noise, shape [B, ...].
        x_1: data, shape [B, ...].
        t: times, shape [B].
        x_t: psi_t(x_0) = sigma_t x_0 + a_t x_1, shape [B, ...].
        u_t: conditional target sigma_t' x_0 + a_t' x_1, shape [B, ...].
    """

    x_0: Tensor
    x_1: Tensor
    t: Tensor
    x_t: Tensor
    u_t: Tensor


class GaussianPath:
    """Base class of the Gaussian conditional paths N(a_t x_1, sigma_t^2 I).

    Attributes:
        t_max: last time the path is used at (1.0, or 1 - eps for diffusion paths where
            sigma_1 = 0 makes the score singular). Training draws t ~ U[0, t_max].
        prior_std: standard deviation of the source N(0, prior_std^2 I) at t = 0
            (1 for OT/VP paths, sigma_max for VE).
    """

    t_max: float = 1.0
    prior_std: float = 1.0

    # ---- schedule: subclasses implement these four, each taking and returning tensors ----
    def alpha(self, t: Tensor) -> Tensor:
        """Mean coefficient a_t (mu_t(x_1) = a_t x_1)."""
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        """Time derivative a_t'."""
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        """Standard deviation sigma_t."""
        raise NotImplementedError

    def d_sigma(self, t: Tensor) -> Tensor:
        """Time derivative sigma_t'."""
        raise NotImplementedError

    # ---- paper quantities ----
    def mu_t(self, x_1: Tensor, t: float | Tensor) -> Tensor:
        """mu_t(x_1) = a_t x_1, shape like x_1."""
        return self.alpha(as_time(t, x_1)) * x_1

    def sigma_t(self, t: float | Tensor, like: Tensor) -> Tensor:
        """sigma_t broadcast like ``like`` ([B, 1, ..., 1])."""
        return self.sigma(as_time(t, like))

    def sample_xt(self, x_0: Tensor, x_1: Tensor, t: float | Tensor) -> Tensor:
        """x_t = psi_t(x_0) = sigma_t x_0 + a_t x_1 (Eq. 11), shape like x_0."""
        tt = as_time(t, x_1)
        return self.sigma(tt) * x_0 + self.alpha(tt) * x_1

    def u_t(self, x_0: Tensor, x_1: Tensor, t: float | Tensor) -> Tensor:
        """Conditional target d/dt psi_t(x_0) = sigma_t' x_0 + a_t' x_1 (Eq. 13)."""
        tt = as_time(t, x_1)
        return self.d_sigma(tt) * x_0 + self.d_alpha(tt) * x_1

    def conditional_velocity(self, x: Tensor, x_1: Tensor, t: float | Tensor) -> Tensor:
        """Theorem 3 field u_t(x | x_1) = sigma_t'/sigma_t (x - a_t x_1) + a_t' x_1 (Eq. 15)."""
        tt = as_time(t, x_1)
        return self.d_sigma(tt) / self.sigma(tt) * (x - self.alpha(tt) * x_1) + self.d_alpha(tt) * x_1

    def sample(self, x_0: Tensor, x_1: Tensor, t: Tensor) -> PathSample:
        """Draw x_t and the target u_t for given noise, data and times ([B])."""
        if x_0.shape != x_1.shape:
            raise ValueError(f"x_0 has shape {tuple(x_0.shape)} but x_1 has {tuple(x_1.shape)}")
        return PathSample(x_0=x_0, x_1=x_1, t=t, x_t=self.sample_xt(x_0, x_1, t), u_t=self.u_t(x_0, x_1, t))

    # ---- conversions eps <-> score <-> velocity (module docstring) ----
    def eps_to_score(self, eps: Tensor, t: float | Tensor) -> Tensor:
        """s = -eps / sigma_t."""
        return -eps / self.sigma(as_time(t, eps))

    def score_to_eps(self, score: Tensor, t: float | Tensor) -> Tensor:
        """eps = -sigma_t s."""
        return -self.sigma(as_time(t, score)) * score

    def _vel_coeffs(self, t: float | Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        tt = as_time(t, x)
        a, da, s, ds = self.alpha(tt), self.d_alpha(tt), self.sigma(tt), self.d_sigma(tt)
        if bool((a == 0).any()):
            raise ValueError("conversion to/from velocity needs a_t > 0 (it is 0 at t = 0 on OT paths)")
        drift = da / a
        return drift, ds - s * drift

    def eps_to_velocity(self, eps: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """u_t(x) = (a_t'/a_t) x + (sigma_t' - sigma_t a_t'/a_t) eps_hat."""
        drift, c = self._vel_coeffs(t, x)
        return drift * x + c * eps

    def velocity_to_eps(self, v: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """eps_hat = (v - (a_t'/a_t) x) / (sigma_t' - sigma_t a_t'/a_t)."""
        drift, c = self._vel_coeffs(t, x)
        return (v - drift * x) / c

    def score_to_velocity(self, score: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """u_t(x) = (a_t'/a_t) x - (sigma_t' sigma_t - sigma_t^2 a_t'/a_t) s."""
        return self.eps_to_velocity(self.score_to_eps(score, t), x, t)

    def velocity_to_score(self, v: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """Inverse of :meth:`score_to_velocity`."""
        return self.eps_to_score(self.velocity_to_eps(v, x, t), t)

    def sample_t(self, batch_size: int, generator: torch.Generator | None = None, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Training times t ~ U[0, t_max], shape [B] (drawn on the generator's device)."""
        gen_device = generator.device if generator is not None else "cpu"
        t = torch.rand(batch_size, generator=generator, device=gen_device, dtype=dtype) * self.t_max
        return t.to(device) if device is not None else t

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
