"""2D synthetic sets: seeded, on the documented support, exact log-densities."""

import math

import numpy as np
import pytest

from fmcore.data import DataError, checkerboard_log_prob, eight_gaussians_log_prob, load_split, prepare
from fmcore.data.toy2d import sample_toy2d


def test_checkerboard_support_and_density():
    x = sample_toy2d("checkerboard", 20000, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (20000, 2)
    assert np.all(np.isfinite(checkerboard_log_prob(x)))  # every sample on the support
    assert np.allclose(checkerboard_log_prob(x), -math.log(32.0))
    # all 8 filled cells are used, about equally
    cells = np.floor(x / 2).astype(int)
    _, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(counts) == 8 and counts.min() > 0.9 * 20000 / 8
    # empty cells and outside have -inf; the density integrates to 1 (Monte Carlo on [-4,4]^2)
    assert np.all(checkerboard_log_prob(np.array([[0.5, 0.5], [-3.0, -3.0], [4.5, 0.0]])) == -np.inf)
    assert np.all(np.isfinite(checkerboard_log_prob(np.array([[2.5, 0.5], [-1.0, -3.0]]))))


def test_checkerboard_is_the_mirrored_ffjord_one():
    """FFJORD's generator (Grathwohl et al. 2019, lib/toy_data.py), mirrored x -> -x, lands on our support."""
    rng = np.random.default_rng(0)
    x1 = rng.random(20000) * 4 - 2
    x2 = rng.random(20000) - rng.integers(0, 2, 20000) * 2 + np.floor(x1) % 2
    ffjord = np.stack([x1, x2], 1) * 2
    assert not np.isfinite(checkerboard_log_prob(ffjord)).any()  # FFJORD fills the other 8 cells
    ffjord[:, 0] = -ffjord[:, 0]
    ffjord = ffjord[ffjord[:, 0] != 4.0]  # x = -(-4) = 4 is the open edge after mirroring
    assert np.all(np.isfinite(checkerboard_log_prob(ffjord)))
    ours = sample_toy2d("checkerboard", 20000, np.random.default_rng(1))
    assert np.allclose(np.cov(ours.T), np.cov(ffjord.T), atol=0.1)
    assert np.allclose(ours.mean(0), ffjord.mean(0), atol=0.06)
    u = np.random.default_rng(1).uniform(-4, 4, size=(200000, 2))
    mass = 64.0 * np.exp(checkerboard_log_prob(u)).mean()
    assert abs(mass - 1.0) < 0.02


def test_eight_gaussians_log_prob_integrates_to_one():
    g = np.linspace(-6, 6, 601)
    xx, yy = np.meshgrid(g, g)
    p = np.exp(eight_gaussians_log_prob(np.stack([xx.ravel(), yy.ravel()], 1)))
    assert abs(p.sum() * (g[1] - g[0]) ** 2 - 1.0) < 1e-3
    x = sample_toy2d("eight_gaussians", 4000, np.random.default_rng(0))
    assert abs(np.linalg.norm(x, axis=1).mean() - 4 / 1.414) < 0.1


def test_moons_and_unknown_shape():
    x = sample_toy2d("moons", 1000, np.random.default_rng(0))
    assert x.shape == (1000, 2) and -4 < x[:, 0].min() < -2.5 and 2.5 < x[:, 0].max() < 4
    with pytest.raises(DataError, match="spiral"):
        sample_toy2d("spiral", 10, np.random.default_rng(0))


def test_prepare_is_seeded_and_loads(tmp_path):
    cfg = {"source": "toy2d", "shape": "checkerboard", "n_train": 300, "n_test": 50, "seed": 3}
    m1 = prepare("cb", cfg, tmp_path / "a")
    m2 = prepare("cb", cfg, tmp_path / "b")
    assert m1 == m2 and m1["counts"] == {"train": 300, "test": 50} and m1["dtype"] == "float32"
    assert (tmp_path / "a/train.npy").read_bytes() == (tmp_path / "b/train.npy").read_bytes()
    train = load_split(tmp_path / "a", "train").tensor()
    test = load_split(tmp_path / "a", "test").tensor()
    assert train.shape == (300, 2) and test.shape == (50, 2)
    assert not np.isin(test.numpy(), train.numpy()).all()  # independent streams
    m3 = prepare("cb", {**cfg, "seed": 4}, tmp_path / "c")
    assert m3["files"]["train.npy"] != m1["files"]["train.npy"]
    assert m1["info"]["log_density"] == pytest.approx(-math.log(32))


@pytest.mark.parametrize("key,value", [("n_train", 0), ("n_test", "10"), ("seed", -1)])
def test_bad_params(tmp_path, key, value):
    cfg = {"source": "toy2d", "shape": "checkerboard", "n_train": 10, "n_test": 10, "seed": 0, key: value}
    with pytest.raises(DataError, match=key):
        prepare("cb", cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
