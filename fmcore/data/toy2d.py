"""Synthetic 2D densities, generated from a seed (offline stand-ins; the paper's Fig. 4).

Checkerboard: a 4x4 checkerboard on [-4, 4]^2. The square is cut into 4 x 4 cells of side 2
and the 8 cells with ``floor(x/2) + floor(y/2)`` odd are filled, uniformly (the cell
[-4, -2)^2 is empty). It is the mirror image (x -> -x) of the FFJORD / torchcfm checkerboard
(Grathwohl et al. 2019: x ~ U[-2, 2], y ~ U[0, 1) - 2 Bernoulli(1/2) + (floor(x) mod 2), both
doubled, which fills the even cells), so the two have the same shape and the same density. Its
density is uniform on a support of area 8 * 2 * 2 = 32, so exactly

.. math::  \\log p_1(x) = -\\log 32 \\approx -3.4657 \\ \\text{on the support}, \\ -\\infty \\ \\text{off it}.

The exact value gives a "sanity gap" for 2D NLLs.

Eight Gaussians (FFJORD): centres 4 * (cos(k pi/4), sin(k pi/4)), std 0.5, then everything
divided by 1.414, i.e. an equal-weight mixture with centres 4/1.414 * e_k and std 0.5/1.414;
its exact log-density is :func:`eight_gaussians_log_prob`.

Two moons: scikit-learn's ``make_moons(noise=0.1)``, scaled by 2 and shifted by (-1, -0.2)
(FFJORD); no closed-form density.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fmcore.data.errors import DataError

__all__ = [
    "CHECKERBOARD_LOG_DENSITY",
    "SHAPES",
    "checkerboard_log_prob",
    "eight_gaussians_log_prob",
    "prepare_toy2d",
    "sample_toy2d",
]

CHECKERBOARD_LOG_DENSITY = -math.log(32.0)
_EIGHT_SCALE = 1.414
_EIGHT_CENTRES = 4.0 / _EIGHT_SCALE * np.array(
    [[math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)] for k in range(8)]
)
_EIGHT_STD = 0.5 / _EIGHT_SCALE
# Filled cells of the checkerboard, lower-left corners (cell side 2).
_CELLS = np.array([(x, y) for x in range(-4, 4, 2) for y in range(-4, 4, 2) if (x // 2 + y // 2) % 2 == 1])


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    cells = _CELLS[rng.integers(0, len(_CELLS), size=n)]
    return cells + 2.0 * rng.random((n, 2))


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = _EIGHT_CENTRES[rng.integers(0, 8, size=n)]
    return centres + _EIGHT_STD * rng.standard_normal((n, 2))


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import make_moons  # heavy import, only when needed

    seed = int(rng.integers(0, 2**31 - 1))
    x, _ = make_moons(n_samples=n, noise=0.1, random_state=seed)
    x = x * 2.0 + np.array([-1.0, -0.2])
    return x[rng.permutation(n)]


SHAPES = {"checkerboard": _checkerboard, "eight_gaussians": _eight_gaussians, "moons": _moons}


def sample_toy2d(shape: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points [n, 2] float32 from the named 2D density."""
    if shape not in SHAPES:
        raise DataError(f"datasets.*.shape: {shape!r} is not a 2D dataset (expected one of {sorted(SHAPES)})")
    return SHAPES[shape](n, rng).astype(np.float32)


def checkerboard_log_prob(x: np.ndarray) -> np.ndarray:
    """Exact log p_1(x) of the checkerboard: -log 32 on the 8 filled cells, -inf elsewhere. x: [N, 2]."""
    x = np.asarray(x, dtype=np.float64)
    inside = np.all((x >= -4.0) & (x < 4.0), axis=-1)
    cell = np.floor(x / 2.0).astype(np.int64)
    filled = ((cell[..., 0] + cell[..., 1]) % 2) == 1
    return np.where(inside & filled, CHECKERBOARD_LOG_DENSITY, -np.inf)


def eight_gaussians_log_prob(x: np.ndarray) -> np.ndarray:
    """Exact log-density of the eight-Gaussians mixture (equal weights, isotropic). x: [N, 2]."""
    x = np.asarray(x, dtype=np.float64)
    d2 = ((x[:, None, :] - _EIGHT_CENTRES[None]) ** 2).sum(-1)
    log_comp = -d2 / (2 * _EIGHT_STD**2) - math.log(2 * math.pi * _EIGHT_STD**2)
    m = log_comp.max(axis=1, keepdims=True)
    return (m[:, 0] + np.log(np.exp(log_comp - m).mean(axis=1))).astype(np.float64)


def _posint(cfg: dict, key: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DataError(f"datasets.*.{key}: {value!r}, expected a positive integer")
    return value


def prepare_toy2d(cfg: dict, raw: Path | None, out_dir: Path) -> dict[str, Any]:
    """Write ``train.npy`` / ``test.npy`` (float32 [N, 2]) from ``cfg`` = {shape, n_train, n_test, seed}.

    Train and test come from independent streams of ``numpy.random.SeedSequence(seed)``.
    """
    del raw  # generated, nothing to read
    shape = cfg.get("shape", "checkerboard")
    n_train, n_test = _posint(cfg, "n_train"), _posint(cfg, "n_test")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"datasets.*.seed: {seed!r}, expected a non-negative integer")
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    np.save(out_dir / "train.npy", sample_toy2d(shape, n_train, np.random.default_rng(train_seq)))
    np.save(out_dir / "test.npy", sample_toy2d(shape, n_test, np.random.default_rng(test_seq)))
    info: dict[str, Any] = {"shape": shape, "generator": "numpy PCG64, SeedSequence(seed).spawn(2)"}
    if shape == "checkerboard":
        info["log_density"] = CHECKERBOARD_LOG_DENSITY
        info["support"] = "[-4,4]^2, 4x4 cells of side 2, cells with floor(x/2)+floor(y/2) odd"
    return {"source_checksums": {}, "info": info}
