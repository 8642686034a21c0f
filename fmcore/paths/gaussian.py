"""Conditional optimal-transport path (Lipman et al. 2023, Sec. 4.1, Example II) and
rectified flow (the same path with sigma_min = 0).

.. math::

    mu_t(x_1) = t x_1,   sigma_t = 1 - (1 - sigma_min) t                       (Eq. 20)
    psi_t(x_0) = (1 - (1 - sigma_min) t) x_0 + t x_1
    u_t = x_1 - (1 - sigma_min) x_0                                            (Eq. 23)
"""

from __future__ import annotations

import torch
from torch import Tensor

from fmcore.paths.base import GaussianPath

__all__ = ["CondOTPath", "RectifiedFlowPath"]


class CondOTPath(GaussianPath):
    """Conditional OT path with a_t = t, sigma_t = 1 - (1 - sigma_min) t on t in [0, 1].

    Args:
        sigma_min: standard deviation of p_1(x | x_1) at t = 1, in [0, 1).
    """

    def __init__(self, sigma_min: float) -> None:
        sigma_min = float(sigma_min)
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min={sigma_min} is outside [0, 1)")
        self.sigma_min = sigma_min
        self.t_max = 1.0
        self.prior_std = 1.0

    def alpha(self, t: Tensor) -> Tensor:
        """a_t = t."""
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        """a_t' = 1."""
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        """sigma_t = 1 - (1 - sigma_min) t."""
        return 1.0 - (1.0 - self.sigma_min) * t

    def d_sigma(self, t: Tensor) -> Tensor:
        """sigma_t' = -(1 - sigma_min)."""
        return torch.full_like(t, -(1.0 - self.sigma_min))


class RectifiedFlowPath(CondOTPath):
    """Rectified flow (Liu et al. 2022): x_t = (1 - t) x_0 + t x_1, u_t = x_1 - x_0."""

    def __init__(self) -> None:
        super().__init__(sigma_min=0.0)
