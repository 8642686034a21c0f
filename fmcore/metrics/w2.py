"""Sample-quality metrics for 2D data: exact 2-Wasserstein distance and Frechet distance.

.. math::

    W_2(\\hat p, \\hat q) = \\Big(\\min_{\\pi \\in \\Pi(a, b)} \\sum_{ij} \\pi_{ij}
        \\lVert x_i - y_j \\rVert^2\\Big)^{1/2}

between the empirical measures of generated samples x_i and fresh data samples y_j
(uniform weights a, b), solved exactly by POT's network simplex ``ot.emd2`` on the squared
Euclidean cost. Named ``w2_2d``; ``fd_2d`` is the Frechet distance of
:mod:`fmcore.metrics.frechet` on the raw coordinates. Both are CPU stand-ins for FID,
never called ``fid``.
"""

from __future__ import annotations

import numpy as np

from fmcore.metrics.frechet import frechet_distance, gaussian_stats

__all__ = ["fd_2d", "w2_2d"]


def _check(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name}: expected shape (num_samples >= 2, dim), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf (diverged samples?)")
    return x


def w2_2d(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W_2 between the empirical measures of ``x`` [N, d] and ``y`` [M, d]."""
    x, y = _check("samples", x), _check("reference", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"w2_2d: dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(y.shape[0], 1.0 / y.shape[0])
    import ot  # POT: imported here, its import costs ~2.5 s that image evaluations never need

    cost = ot.dist(x, y, metric="sqeuclidean")
    w2_sq = ot.emd2(a, b, cost, numItermax=10_000_000)
    return float(np.sqrt(max(float(w2_sq), 0.0)))


def fd_2d(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of ``x`` [N, d] and ``y`` [M, d]."""
    mu1, s1 = gaussian_stats(_check("samples", x))
    mu2, s2 = gaussian_stats(_check("reference", y))
    return frechet_distance(mu1, s1, mu2, s2)
