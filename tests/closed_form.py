"""Test helper: Gaussian data pushed through a Gaussian conditional path, in closed form.

Data x_1 ~ N(mu, Q diag(s^2) Q^T). On a path x_t = a_t x_1 + sigma_t x_0 the marginal is
p_t = N(m_t, Q diag(S_t^2) Q^T) with m_t = a_t mu, S_t^2 = a_t^2 s^2 + sigma_t^2, and the marginal
(flow-matching) velocity E[a_t' x_1 + sigma_t' x_0 | x_t = x] is affine:

    u_t(x) = m_t' + Q diag(S_t'/S_t) Q^T (x - m_t),   S_t S_t' = a_t a_t' s^2 + sigma_t sigma_t'.

Its flow is x_t = m_t + Q diag(S_t/S_r) Q^T (x_r - m_r) for any start time r.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fmcore.paths import GaussianPath


class GaussianFlow:
    def __init__(self, path: GaussianPath, mu: Tensor, s: Tensor, q: Tensor | None = None) -> None:
        self.path, self.mu, self.s = path, mu, s
        self.q = torch.eye(mu.numel(), dtype=mu.dtype) if q is None else q

    def _coef(self, t: Tensor | float):
        t = torch.as_tensor(t, dtype=self.mu.dtype).reshape(1)
        a, da = self.path.alpha(t), self.path.d_alpha(t)
        sig, dsig = self.path.sigma(t), self.path.d_sigma(t)
        var = a**2 * self.s**2 + sig**2
        return a, da, var.sqrt(), (a * da * self.s**2 + sig * dsig) / var.sqrt()

    def _rot(self, x: Tensor, diag: Tensor) -> Tensor:
        return ((x @ self.q) * diag) @ self.q.T

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        a, da, big_s, d_big_s = self._coef(t)
        return da * self.mu + self._rot(x - a * self.mu, d_big_s / big_s)

    def score(self, t: Tensor, x: Tensor) -> Tensor:
        a, _, big_s, _ = self._coef(t)
        return -self._rot(x - a * self.mu, 1.0 / big_s**2)

    def flow(self, x: Tensor, t_from: float, t_to: float) -> Tensor:
        a_r, _, s_r, _ = self._coef(t_from)
        a_t, _, s_t, _ = self._coef(t_to)
        return a_t * self.mu + self._rot(x - a_r * self.mu, s_t / s_r)

    def std(self, t: float) -> Tensor:
        return self._coef(t)[2]

    def log_prob(self, x1: Tensor, t1: float, prior_std: float) -> Tensor:
        """What the ODE likelihood must return: log N(x0; 0, prior_std^2 I) + log |dx0/dx1|."""
        x0 = self.flow(x1, t1, 0.0)
        d = x1.shape[1]
        log_n = -0.5 * (x0**2).sum(1) / prior_std**2 - d * math.log(prior_std) - 0.5 * d * math.log(2 * math.pi)
        return log_n - torch.log(self.std(t1) / self.std(0.0)).sum()

    def model(self, prediction: str):
        """A 'trained' model with the exact output for the given prediction type."""

        def net(x: Tensor, tb: Tensor) -> Tensor:
            t = tb[0]
            sig = self.path.sigma(t.reshape(1))
            if prediction == "velocity":
                return self.velocity(t, x)
            if prediction == "eps":
                return -sig * self.score(t, x)
            return sig * self.score(t, x)  # noise-scaled score

        return net
