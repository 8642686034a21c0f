"""Training objectives, each a callable ``objective(model, x_1, generator) -> loss [B]``.

Every objective draws its own noise x_0 ~ N(0, I) and times t from ``generator`` (on the
generator's device, then moved to x_1's device), and returns the *unreduced* per-sample
loss; squared norms are averaged over the non-batch dimensions (||.||^2 / D), so losses
are comparable across data sizes. ``objective.prediction`` tells
:func:`fmcore.paths.velocity_field` what the model outputs.

- ``cfm`` (Lipman et al. 2023, Eq. 9 / 14): E_{t~U[0,t_max]} ||v_theta(t, psi_t(x_0)) - u_t||^2.
- ``ot_cfm`` (Tong et al. 2023; Pooladian et al. 2023): CFM after re-pairing (x_0, x_1) in the
  batch with the exact OT plan ``ot.emd`` for the squared Euclidean cost.
- ``ddpm_eps`` (Ho et al. 2020, continuous-time VP form of Song et al. 2021):
  E_{t~U[0,1-eps]} ||eps_theta(x_t, t) - x_0||^2 on the VP path; the discrete DDPM steps are
  replaced by the VP path's continuous time, the standard continuous limit.
- ``dsm`` (Song & Ermon 2019; Song et al. 2021): lambda(t) ||s_theta(x_t, t) + x_0/sigma_t||^2 with
  lambda = sigma_t^2. The model outputs the noise-scaled score n_theta = sigma_t s_theta, so the
  loss is ||n_theta + x_0||^2.
- ``scoreflow`` (Song et al. 2021, "Maximum likelihood training of score-based diffusion
  models"): likelihood weighting lambda = g^2 (g^2 = beta(1-t) for VP), i.e.
  (g^2/sigma_t^2) ||n_theta + x_0||^2. The weight g^2/sigma_t^2 is huge near the data end, so t
  is importance-sampled with density proportional to it (closed form for VP, uniform for VE where
  it is constant): the estimator Z ||n_theta + x_0||^2, Z = int_0^{t_max} g^2/sigma_t^2 dt, is
  unbiased for int_0^{t_max} lambda(t) E||s_theta + x_0/sigma_t||^2 dt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fmcore.paths import GaussianPath, VEPath, VPPath

__all__ = [
    "Objective",
    "CFMObjective",
    "OTCFMObjective",
    "DDPMEpsObjective",
    "DSMObjective",
    "ScoreFlowObjective",
    "build_objective",
    "ot_pairing",
]

Model = Callable[[Tensor, Tensor], Tensor]


def _mse(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample mean squared difference over non-batch dims, shape [B]."""
    return (a - b).pow(2).flatten(1).mean(dim=1)


class Objective:
    """Base: draws (x_0, t) and defines ``prediction``. Subclasses implement ``loss``."""

    prediction: str = "velocity"

    def __init__(self, path: GaussianPath) -> None:
        self.path = path

    def draw_noise(self, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        """x_0 ~ N(0, I) like x_1, drawn on the generator's device."""
        dev = generator.device if generator is not None else torch.device("cpu")
        x_0 = torch.randn(x_1.shape, generator=generator, device=dev, dtype=x_1.dtype)
        return x_0.to(x_1.device)

    def draw_t(self, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        """t ~ U[0, t_max], shape [B]."""
        return self.path.sample_t(x_1.shape[0], generator, device=x_1.device, dtype=x_1.dtype)

    def __call__(self, model: Model, x_1: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Per-sample loss [B] for a data batch x_1 [B, ...]."""
        if x_1.dim() < 2:
            raise ValueError(f"x_1 must have shape [B, ...] with at least 2 dims, got {tuple(x_1.shape)}")
        return self.loss(model, x_1, generator)

    def loss(self, model: Model, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, prediction={self.prediction!r})"


class CFMObjective(Objective):
    """Conditional flow matching: ||v_theta(t, x_t) - (sigma_t' x_0 + a_t' x_1)||^2."""

    prediction = "velocity"

    def pair(self, x_0: Tensor, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        """Coupling of noise and data: independent for CFM (returns x_0 unchanged)."""
        return x_0

    def loss(self, model: Model, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        x_0 = self.pair(self.draw_noise(x_1, generator), x_1, generator)
        t = self.draw_t(x_1, generator)
        s = self.path.sample(x_0, x_1, t)
        return _mse(model(s.x_t, t), s.u_t)


def ot_pairing(x_0: Tensor, x_1: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Re-order x_0 so that (x_0[i], x_1[i]) follow the exact OT plan of the batch.

    The plan pi = argmin_{pi in U(1/B, 1/B)} sum_ij pi_ij ||x_0^i - x_1^j||^2 is computed with
    POT's network simplex ``ot.emd``. For equal uniform marginals it is a permutation
    (a vertex of the Birkhoff polytope); if ``ot.emd`` returns a non-permutation plan, each x_1^j
    draws its partner from pi[:, j] / sum_i pi_ij.

    Args:
        x_0: noise, shape [B, ...].
        x_1: data, shape [B, ...].
        generator: RNG used only for a non-permutation plan.

    Returns:
        x_0 permuted (or resampled) along the batch, shape [B, ...].
    """
    import ot  # POT pulls in scikit-learn (~2.4 s at start-up); only OT-CFM jobs pay for it

    n = x_0.shape[0]
    a = x_0.detach().flatten(1).to("cpu", torch.float64).numpy()
    b = x_1.detach().flatten(1).to("cpu", torch.float64).numpy()
    cost = ot.dist(a, b, metric="sqeuclidean")
    w = np.full(n, 1.0 / n)
    plan = ot.emd(w, w, cost, numItermax=max(100_000, 50 * n * n))
    src = plan.argmax(axis=0)  # partner x_0 index of each x_1 column
    if not np.allclose(plan[src, np.arange(n)], 1.0 / n, rtol=1e-6, atol=1e-12):
        probs = torch.from_numpy(plan.T / plan.sum(axis=0, keepdims=True).T)
        dev = generator.device if generator is not None else torch.device("cpu")
        src = torch.multinomial(probs.to(dev), 1, generator=generator).squeeze(1).cpu().numpy()
    return x_0[torch.as_tensor(src, device=x_0.device)]


class OTCFMObjective(CFMObjective):
    """Minibatch OT-CFM: CFM on the OT-coupled batch (see :func:`ot_pairing`)."""

    def pair(self, x_0: Tensor, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        return ot_pairing(x_0, x_1, generator)


class DDPMEpsObjective(Objective):
    """Noise prediction on the VP path: ||eps_theta(x_t, t) - x_0||^2, t ~ U[0, 1 - eps]."""

    prediction = "eps"

    def loss(self, model: Model, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        x_0, t = self.draw_noise(x_1, generator), self.draw_t(x_1, generator)
        return _mse(model(self.path.sample_xt(x_0, x_1, t), t), x_0)


class DSMObjective(Objective):
    """Denoising score matching, lambda = sigma_t^2: ||n_theta(x_t, t) + x_0||^2, n = sigma_t s."""

    prediction = "score"

    def loss(self, model: Model, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        x_0, t = self.draw_noise(x_1, generator), self.draw_t(x_1, generator)
        return _mse(model(self.path.sample_xt(x_0, x_1, t), t), -x_0)


class ScoreFlowObjective(Objective):
    """Likelihood-weighted DSM (lambda = g^2) with importance-sampled t (module docstring).

    VP: w(s) = beta(s) / (1 - e^{-T(s)}) in SDE time s = 1 - t has antiderivative
    log(e^{T(s)} - 1), so s = T^{-1}(softplus(L_eps + u Z)), u ~ U[0, 1),
    L_eps = log(e^{T(eps)} - 1), Z = log(e^{T(1)} - 1) - L_eps. VE: w = 2 ln(sigma_max/sigma_min)
    is constant, t ~ U[0, t_max], Z = w t_max.
    """

    prediction = "score"

    def __init__(self, path: GaussianPath) -> None:
        super().__init__(path)
        if isinstance(path, VPPath):
            if path.eps <= 0.0:
                raise ValueError("scoreflow on the VP path needs eps > 0 (the weight diverges at t = 1)")
            one = torch.tensor([path.eps, 1.0], dtype=torch.float64)
            logs = torch.log(torch.expm1(path.big_t(one)))
            self._l_eps = float(logs[0])
            self.z = float(logs[1] - logs[0])
        else:
            self.z = float(path.diffusion_sq(torch.zeros(1)) / path.sigma(torch.zeros(1)) ** 2) * path.t_max

    def draw_t(self, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        if not isinstance(self.path, VPPath):
            return super().draw_t(x_1, generator)
        dev = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(x_1.shape[0], generator=generator, device=dev, dtype=torch.float64)
        s = self.path.big_t_inverse(torch.nn.functional.softplus(self._l_eps + u * self.z))
        return (1.0 - s).clamp(0.0, self.path.t_max).to(device=x_1.device, dtype=x_1.dtype)

    def loss(self, model: Model, x_1: Tensor, generator: torch.Generator | None) -> Tensor:
        x_0, t = self.draw_noise(x_1, generator), self.draw_t(x_1, generator)
        return self.z * _mse(model(self.path.sample_xt(x_0, x_1, t), t), -x_0)


_OBJECTIVES: dict[str, tuple[type[Objective], tuple[type[GaussianPath], ...]]] = {
    "cfm": (CFMObjective, (GaussianPath,)),
    "ot_cfm": (OTCFMObjective, (GaussianPath,)),
    "ddpm_eps": (DDPMEpsObjective, (VPPath,)),
    "dsm": (DSMObjective, (VEPath, VPPath)),
    "scoreflow": (ScoreFlowObjective, (VPPath, VEPath)),
}


def build_objective(path_cfg: Mapping[str, Any], path: GaussianPath) -> Objective:
    """Build the objective named by ``path_cfg["objective"]`` on ``path``.

    Args:
        path_cfg: the method's params section (``objective`` in cfm | ot_cfm | ddpm_eps | dsm | scoreflow).
        path: the path built from the same section by :func:`fmcore.paths.build_path`.

    Returns:
        The objective; ``objective.prediction`` is ``"velocity" | "eps" | "score"``.

    Raises:
        ValueError: unknown objective, or one that does not fit the path kind.
    """
    name = path_cfg.get("objective")
    if name not in _OBJECTIVES:
        raise ValueError(f"path.objective={name!r}: expected one of {sorted(_OBJECTIVES)}")
    cls, allowed = _OBJECTIVES[name]
    if not isinstance(path, allowed):
        want = " or ".join(c.__name__ for c in allowed)
        raise ValueError(f"path.objective={name!r} needs a {want}, got {type(path).__name__}")
    return cls(path)

