"""Metrics: Frechet distance vs closed forms, W2, bits/dim constant, FID path, stand-in CNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmcore.evaluation.io import BatchCache
from fmcore.evaluation.paths_data import straightness
from fmcore.evaluation.sweep import plan_sweep
from fmcore.metrics.fid import (
    INCEPTION_URL,
    WEIGHTS_ENV,
    clean_resize,
    fid_from_features,
    image_features,
    model_to_uint8,
    resolve_inception_weights,
    save_stats,
    stats_filename,
)
from fmcore.metrics.frechet import frechet_distance, gaussian_stats
from fmcore.metrics.nll import mean_se, summarize_2d, summarize_images
from fmcore.metrics.w2 import fd_2d, w2_2d

torch.set_num_threads(1)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh(a)
    return (q * np.sqrt(np.clip(w, 0, None))) @ q.T


def test_frechet_commuting_covariances_closed_form() -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    d1, d2 = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    s1, s2 = (q * d1) @ q.T, (q * d2) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_general_matches_w2_between_gaussians() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    r2 = _psd_sqrt(s2)
    expected = np.trace(s1 + s2 - 2 * _psd_sqrt(r2 @ s1 @ r2)) + 1.0  # |mu diff|^2 = 1
    got = frechet_distance(np.zeros(4), s1, np.eye(4)[0], s2)
    assert got == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_rejects_bad_shapes_and_data() -> None:
    with pytest.raises(ValueError, match="shapes disagree"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_w2_and_fd_2d_of_a_translation() -> None:
    x = np.random.default_rng(2).standard_normal((300, 2))
    shift = np.array([0.3, -0.4])
    assert w2_2d(x, x) == pytest.approx(0.0, abs=1e-9)
    assert w2_2d(x, x + shift) == pytest.approx(0.5, rel=1e-9)
    assert fd_2d(x, x + shift) == pytest.approx(0.25, rel=1e-9)


def test_bits_per_dim_constant_uniform_flat_model() -> None:
    """Uniform dequantized 8-bit data under the flat density on [-1, 1]^D is 8 bits/dim."""
    d = 64
    logp = np.full(10, -d * math.log(2.0))  # density 2^-D on the model range
    out = summarize_images(logp, d)
    assert out["nll_bpd"] == pytest.approx(8.0, abs=1e-12)
    assert out["nll_bpd_se"] == 0.0
    assert summarize_images(np.zeros(3), 1, scale="zero_one")["nll_bpd"] == pytest.approx(8.0)


def test_nll_2d_gap_to_the_checkerboard_density() -> None:
    x = np.array([[-3.0, -1.0], [1.0, 3.0], [-1.0, -3.0]])  # all on filled cells
    out = summarize_2d(np.full(3, -4.0), x, "checkerboard")
    assert out["nll_nats_true"] == pytest.approx(math.log(32.0))
    assert out["nll_nats_gap"] == pytest.approx(4.0 - math.log(32.0))
    assert mean_se(np.array([1.0, 3.0])) == pytest.approx((2.0, 1.0))


def test_inception_missing_file_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    for configured in (None, str(tmp_path / "nope.pt")):
        with pytest.raises(ValueError) as err:
            resolve_inception_weights(configured, "cifar10")
        msg = str(err.value)
        assert "\n" not in msg and INCEPTION_URL in msg and WEIGHTS_ENV in msg
        assert "evaluate.cifar10.quality.inception_weights" in msg
    f = tmp_path / "inception-2015-12-05.pt"
    f.write_bytes(b"x")
    monkeypatch.setenv(WEIGHTS_ENV, str(f))
    assert resolve_inception_weights(None) == f


class TinyExtractor(torch.nn.Module):
    """Stands in for Inception: pooled colour statistics of [B, 3, 299, 299] images in [0, 255]."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        assert float(x.min()) >= 0.0 and float(x.max()) <= 255.0
        pooled = torch.nn.functional.avg_pool2d(x / 255.0, 100)  # [B, 3, 2, 2]
        return pooled.flatten(1)


def test_fid_path_with_injected_extractor(tmp_path) -> None:
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    net = TinyExtractor()
    feats = image_features(real, net)
    assert net.seen == [(40, 3, 299, 299)] and feats.shape == (40, 12)
    name = stats_filename("Digits_train")
    assert name == "digits_train_clean_custom_na.npz"
    save_stats(tmp_path / name, feats)
    assert fid_from_features(feats, tmp_path / name) == pytest.approx(0.0, abs=1e-8)
    other = image_features(np.clip(real.astype(int) + 60, 0, 255).astype(np.uint8), net)
    assert fid_from_features(other, tmp_path / name) > 0.01
    with pytest.raises(ValueError, match="reference statistics missing"):
        fid_from_features(feats, tmp_path / "absent.npz")


def test_model_to_uint8_inverts_dequantization_and_resize_shape() -> None:
    k = torch.arange(256, dtype=torch.float32).reshape(1, 1, 16, 16)
    y = 2 * (k + torch.rand_like(k) * 0.999) / 256 - 1
    assert np.array_equal(model_to_uint8(y)[0, :, :, 0], k[0, 0].numpy().astype(np.uint8))
    out = clean_resize(np.full((2, 8, 8, 1), 200, np.uint8))
    assert out.shape == (2, 3, 299, 299) and torch.allclose(out, torch.full_like(out, 200.0), atol=1e-3)


def test_batch_cache_resumes_and_invalidates(tmp_path) -> None:
    calls: list[int] = []

    def compute(i: int) -> dict[str, np.ndarray]:
        calls.append(i)
        return {"v": np.array([i * 10])}

    assert BatchCache(tmp_path / "c", {"a": 1}).run(4, compute, "t")["v"].tolist() == [0, 10, 20, 30]
    (tmp_path / "c" / "batch_000002.npz").unlink()
    calls.clear()
    assert BatchCache(tmp_path / "c", {"a": 1}).run(4, compute, "t")["v"].tolist() == [0, 10, 20, 30]
    assert calls == [2]
    calls.clear()
    BatchCache(tmp_path / "c", {"a": 2}).run(4, compute, "t")
    assert calls == [0, 1, 2, 3]


def test_plan_sweep_skips_budgets_a_solver_cannot_hit() -> None:
    runs, skipped = plan_sweep(["euler", "midpoint", "rk4"], [2, 4, 6])
    assert ("rk4", 4, 1) in runs and ("midpoint", 6, 3) in runs and ("euler", 2, 2) in runs
    assert skipped == ["rk4@2 (not a multiple of 4 evaluations per step)",
                       "rk4@6 (not a multiple of 4 evaluations per step)"]
    with pytest.raises(ValueError, match="heun"):
        plan_sweep(["heun"], [4])


def test_straightness_zero_for_chords_positive_for_curves() -> None:
    t = torch.linspace(0, 1, 11)
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    line = (1 - t)[:, None, None] * x0 + t[:, None, None] * x1
    assert straightness(line, t)[0] == pytest.approx(0.0, abs=1e-6)
    bend = line + torch.sin(math.pi * t)[:, None, None] * torch.tensor([1.0, 0.0])
    assert straightness(bend, t)[0] > 0.1


def test_guard_solver_turns_underflow_and_nan_into_part_failures() -> None:
    from fmcore.evaluation.context import PartFailure, guard_solver

    def underflow() -> tuple[torch.Tensor, int]:
        raise AssertionError("underflow in dt 0.0")

    with pytest.raises(PartFailure, match="nll x/y: ODE solver failed"):
        guard_solver("nll x/y", underflow)
    with pytest.raises(PartFailure, match="not finite"):
        guard_solver("s", lambda: (torch.tensor([float("nan")]), 3))
    assert guard_solver("s", lambda: (torch.ones(2), 3))[1] == 3


def test_resolve_device_auto_and_clear_errors() -> None:
    from fmcore.evaluation.context import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected auto, cpu or cuda"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_params_schema_rejects_bad_evaluate_keys() -> None:
    import copy
    from pathlib import Path

    import yaml

    from fmcore.config import ParamsError, validate_params

    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "params" / "smoke.yaml").read_text())
    validate_params(copy.deepcopy(base), "smoke")
    for path, value, expected in (
        (("digits", "quality", "metric"), "fid_digits", "evaluate.digits.quality.metric"),
        (("checkerboard", "sweep", "solvers"), ["heun"], "evaluate.checkerboard.sweep.solvers.0"),
        (("checkerboard", "nll", "probe"), "sphere", "evaluate.checkerboard.nll.probe"),
    ):
        bad = copy.deepcopy(base)
        bad["evaluate"][path[0]][path[1]][path[2]] = value
        with pytest.raises(ParamsError, match=expected.replace(".", r"\.")):
            validate_params(bad, "smoke")
