"""Frechet distance between two Gaussians, as clean-fid computes it.

.. math::

    d^2\\big(\\mathcal N(\\mu_1, \\Sigma_1), \\mathcal N(\\mu_2, \\Sigma_2)\\big)
      = \\lVert \\mu_1 - \\mu_2 \\rVert^2
      + \\operatorname{tr}\\big(\\Sigma_1 + \\Sigma_2 - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\big)

This is ``cleanfid.fid.frechet_distance`` (clean-fid 0.1.35, ``fid.py``): the matrix
square root by ``scipy.linalg.sqrtm`` (without its deprecated ``disp`` flag), ``eps``
added to both diagonals when the product is
singular, and a negligible imaginary part dropped. It is re-implemented here (one small
function) because ``cleanfid.fid`` imports torchvision, which has no CPU build beside the
CPU torch (the CPU requirements in ``requirements/``). FID is this distance between Inception pool
features of samples and of the training set; the CPU stand-ins use other features and
other names (``fd_digits``, ``fd_2d``).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

__all__ = ["frechet_distance", "gaussian_stats"]


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, ``np.mean(f, 0)`` and ``np.cov(f, rowvar=False)``.

    Args:
        features: array of shape (num_samples, dim), num_samples >= 2.

    Returns:
        ``(mu [dim], sigma [dim, dim])`` in float64.

    Raises:
        ValueError: the array is not 2-D, has fewer than 2 rows, or is not finite.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features: expected shape (num_samples >= 2, dim), got {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features: contain NaN or inf (diverged samples?)")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1: mean, shape (dim,).
        sigma1: covariance, shape (dim, dim).
        mu2: mean, shape (dim,).
        sigma2: covariance, shape (dim, dim).
        eps: diagonal offset used only if sqrtm of the product is not finite.

    Returns:
        The distance d^2 above (a float; FID is reported as this value).

    Raises:
        ValueError: shapes disagree, or the matrix root has a large imaginary part.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"frechet_distance: shapes disagree: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are handled below, as clean-fid does
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
