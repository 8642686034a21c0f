"""Negative log-likelihood on the test split through the flow's change of variables.

.. math::

    \\log p_1(x_1) = \\log p_0(x_0) - \\int_0^{t_{max}} \\operatorname{div} v(t, x_t)\\, dt

computed by :func:`fmcore.likelihood.log_prob_path` (dopri5; exact divergence or
Hutchinson), with the path's ``t_max`` and prior std, so diffusion baselines get the
likelihood of their probability-flow ODE (VE: source N(0, sigma_max^2 I)).

* Images: bits/dim of the uniformly dequantized 8-bit data scaled to [-1, 1],
  ``bpd = -log p(y) / (D ln 2) + 7`` (:func:`fmcore.likelihood.bits_per_dim`), with
  ``log p`` the K-sample importance-weighted dequantization estimate
  ``log (1/K) sum_k p(y_k)``, y_k = 2 (x + u_k) / 256 - 1 (K = ``nll.dequant_samples``,
  1 by default; the paper uses 50 for CIFAR-10, 10 for ImageNet). With the exact divergence
  it is an upper bound on the discrete NLL that tightens as K grows; with a Hutchinson
  divergence (a fresh probe per sample) it is biased low for K > 1 and not a strict bound, so
  the evaluation also reports the K = 1 estimate (docs/paper.md, "Evaluation").
* 2D: NLL in nats, and the exact NLL of the data's known density at the same test points
  (checkerboard: log 32 = 3.4657 nats), so the gap to the truth is visible.

Mean and standard error (sample std / sqrt(n)) over test points.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from fmcore.data.toy2d import checkerboard_log_prob, eight_gaussians_log_prob
from fmcore.likelihood import bits_per_dim, log_prob_path
from fmcore.paths import GaussianPath

__all__ = ["KNOWN_2D_LOG_PROB", "batch_log_prob", "mean_se", "summarize_2d", "summarize_images"]

KNOWN_2D_LOG_PROB: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "checkerboard": checkerboard_log_prob,
    "eight_gaussians": eight_gaussians_log_prob,
}


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error ``std(ddof=1) / sqrt(n)`` (se 0 for one value).

    Raises:
        ValueError: empty or non-finite values.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"mean_se: expected finite values, got {a.size} values with non-finite ones")
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0
    return float(a.mean()), se


def batch_log_prob(
    v: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    path: GaussianPath,
    x_1: torch.Tensor,
    cfg: dict,
    generator: torch.Generator | None = None,
) -> dict[str, np.ndarray]:
    """log p_1 in nats [B] of one batch and the solver's NFE, from an ``evaluate.*.nll`` section.

    ``cfg`` keys: ``exact`` (bool), ``atol``, ``rtol``, and for Hutchinson ``probe``
    (``rademacher`` | ``gaussian``) and ``hutchinson_samples``.
    """
    logp, nfe = log_prob_path(
        v, path, x_1, exact=bool(cfg.get("exact", True)), atol=float(cfg["atol"]), rtol=float(cfg["rtol"]),
        hutchinson_samples=int(cfg.get("hutchinson_samples", 1)), probe=str(cfg.get("probe", "rademacher")),
        generator=generator,
    )  # fmt: skip
    return {"logp": logp.double().cpu().numpy(), "nfe": np.array([nfe], dtype=np.int64)}


def summarize_images(logp: np.ndarray, num_dims: int, scale: str = "minus_one_one") -> dict[str, float]:
    """``nll_bpd`` and ``nll_bpd_se`` from per-image log-densities in model space (nats)."""
    bpd = bits_per_dim(torch.as_tensor(logp, dtype=torch.float64), num_dims, scale=scale).numpy()
    mean, se = mean_se(bpd)
    return {"nll_bpd": mean, "nll_bpd_se": se}


def summarize_2d(logp: np.ndarray, x_1: np.ndarray, shape: str | None) -> dict[str, float]:
    """``nll_nats`` (+ ``_se``) and, for a density known in closed form, ``nll_nats_true`` and the gap."""
    mean, se = mean_se(-np.asarray(logp))
    out = {"nll_nats": mean, "nll_nats_se": se}
    if shape in KNOWN_2D_LOG_PROB:
        true = -KNOWN_2D_LOG_PROB[shape](np.asarray(x_1))
        if np.isfinite(true).all():
            out["nll_nats_true"] = float(true.mean())
            out["nll_nats_gap"] = mean - out["nll_nats_true"]
    return out
