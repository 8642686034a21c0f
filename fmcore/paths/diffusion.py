"""Diffusion conditional paths in flow-matching time (Lipman et al. 2023, Sec. 4.1, Example I).

The score-SDE forward time is s = 1 - t (s = 0 data, s = 1 noise). Both paths have
sigma_1 = 0 or tiny at t = 1, so they are used on t in [0, t_max] with t_max = 1 - eps.

VP (Eq. 19), with beta(s) = beta_min + (beta_max - beta_min) s:

.. math::

    T(s) = int_0^s beta(r) dr = beta_min s + (beta_max - beta_min) s^2 / 2,
    alpha_s = exp(-T(s)/2),
    mu_t(x_1) = alpha_{1-t} x_1,   sigma_t = sqrt(1 - alpha_{1-t}^2),
    d/dt alpha_{1-t} = alpha_{1-t} beta(1-t)/2,   sigma_t' = -alpha_{1-t} (d/dt alpha_{1-t}) / sigma_t.

VE (Eq. 17), with sigma_s = sigma_min (sigma_max/sigma_min)^s:

.. math::

    mu_t(x_1) = x_1,   sigma_t = sigma_{1-t},   sigma_t' = -ln(sigma_max/sigma_min) sigma_t.

At t = 0 the VE path is N(x_1, sigma_max^2 I), approximated by the source N(0, sigma_max^2 I):
``prior_std = sigma_max``. The VP path at t = 0 has a_0 = exp(-T(1)/2) ~ 0 and sigma_0 ~ 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fmcore.paths.base import GaussianPath

__all__ = ["VPPath", "VEPath"]


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps={eps} is outside [0, 1)")
    return eps


class VPPath(GaussianPath):
    """Variance-preserving diffusion path (DDPM / score-SDE VP) in FM time.

    Args:
        beta_min: beta(0) of the linear noise schedule (> 0).
        beta_max: beta(1) (>= beta_min).
        eps: training times are t in [0, 1 - eps].
    """

    def __init__(self, beta_min: float, beta_max: float, eps: float) -> None:
        beta_min, beta_max = float(beta_min), float(beta_max)
        if not 0.0 < beta_min <= beta_max:
            raise ValueError(f"need 0 < beta_min <= beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min, self.beta_max, self.eps = beta_min, beta_max, _check_eps(eps)
        self.t_max = 1.0 - self.eps
        self.prior_std = 1.0

    def beta(self, s: Tensor) -> Tensor:
        """beta(s) = beta_min + (beta_max - beta_min) s (forward SDE time s = 1 - t)."""
        return self.beta_min + (self.beta_max - self.beta_min) * s

    def big_t(self, s: Tensor) -> Tensor:
        """T(s) = beta_min s + (beta_max - beta_min) s^2 / 2."""
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def big_t_inverse(self, big_t: Tensor) -> Tensor:
        """s such that T(s) = big_t (positive root of the quadratic)."""
        d = self.beta_max - self.beta_min
        if d == 0.0:
            return big_t / self.beta_min
        return (torch.sqrt(self.beta_min**2 + 2.0 * d * big_t) - self.beta_min) / d

    def alpha(self, t: Tensor) -> Tensor:
        """a_t = alpha_{1-t} = exp(-T(1-t)/2)."""
        return torch.exp(-0.5 * self.big_t(1.0 - t))

    def d_alpha(self, t: Tensor) -> Tensor:
        """a_t' = alpha_{1-t} beta(1-t) / 2."""
        return 0.5 * self.alpha(t) * self.beta(1.0 - t)

    def sigma(self, t: Tensor) -> Tensor:
        """sigma_t = sqrt(1 - alpha_{1-t}^2) = sqrt(-expm1(-T(1-t)))."""
        return torch.sqrt(-torch.expm1(-self.big_t(1.0 - t)))

    def d_sigma(self, t: Tensor) -> Tensor:
        """sigma_t' = -a_t a_t' / sigma_t."""
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def diffusion_sq(self, t: Tensor) -> Tensor:
        """g^2 of the forward SDE at s = 1 - t: beta(1 - t) (ScoreFlow weighting)."""
        return self.beta(1.0 - t)


class VEPath(GaussianPath):
    """Variance-exploding diffusion path (NCSN / score-SDE VE) in FM time.

    Args:
        sigma_min: noise level at t = 1 (> 0).
        sigma_max: noise level at t = 0 (> sigma_min); the source is N(0, sigma_max^2 I).
        eps: training times are t in [0, 1 - eps].
    """

    def __init__(self, sigma_min: float, sigma_max: float, eps: float) -> None:
        sigma_min, sigma_max = float(sigma_min), float(sigma_max)
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.sigma_min, self.sigma_max, self.eps = sigma_min, sigma_max, _check_eps(eps)
        self.t_max = 1.0 - self.eps
        self.prior_std = sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def alpha(self, t: Tensor) -> Tensor:
        """a_t = 1."""
        return torch.ones_like(t)

    def d_alpha(self, t: Tensor) -> Tensor:
        """a_t' = 0."""
        return torch.zeros_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        """sigma_t = sigma_min (sigma_max/sigma_min)^(1-t)."""
        return self.sigma_min * torch.exp(self._log_ratio * (1.0 - t))

    def d_sigma(self, t: Tensor) -> Tensor:
        """sigma_t' = -ln(sigma_max/sigma_min) sigma_t."""
        return -self._log_ratio * self.sigma(t)

    def diffusion_sq(self, t: Tensor) -> Tensor:
        """g^2 = d sigma_s^2 / ds at s = 1 - t = 2 ln(sigma_max/sigma_min) sigma_t^2."""
        return 2.0 * self._log_ratio * self.sigma(t) ** 2
