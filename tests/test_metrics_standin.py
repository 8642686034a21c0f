"""The digits stand-in: a CNN whose features give fd_digits (never called fid)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fmcore.data.digits import digits_to_uint8
from fmcore.evaluation.quality import METRICS, reference_stats_path
from fmcore.metrics.frechet import frechet_distance, gaussian_stats
from fmcore.metrics.standin import (
    accuracy,
    digits_features,
    load_classifier,
    save_classifier,
    train_classifier,
)

torch.set_num_threads(1)


def test_classifier_trains_saves_and_gives_features(tmp_path) -> None:
    bunch = load_digits()
    images, labels = digits_to_uint8(bunch.images)[:, None], bunch.target
    start = time.perf_counter()
    model = train_classifier(images[:1400], labels[:1400], steps=150, seed=0)
    elapsed = time.perf_counter() - start
    acc = accuracy(model, images[1400:], labels[1400:])
    assert acc > 0.8, f"held-out accuracy {acc:.3f} after 150 steps ({elapsed:.1f} s)"  # measured 0.90
    save_classifier(tmp_path / "cnn.pt", model, acc, 150)
    loaded, acc2 = load_classifier(tmp_path / "cnn.pt")
    assert acc2 == acc
    f1, f2 = digits_features(model, images[1400:]), digits_features(loaded, images[1400:])
    assert f1.shape == (len(images) - 1400, 64) and np.allclose(f1, f2)
    # held-out digits are close to the training statistics; noise images are far
    mu, sigma = gaussian_stats(digits_features(model, images[:1400]))
    noise = np.random.default_rng(0).integers(0, 256, (300, 1, 8, 8), dtype=np.uint8)
    fd_test = frechet_distance(*gaussian_stats(f1), mu, sigma)
    fd_noise = frechet_distance(*gaussian_stats(digits_features(model, noise)), mu, sigma)
    assert fd_noise > 5 * fd_test


def test_classifier_checkpoint_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ValueError, match="digits classifier missing; run"):
        load_classifier(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot load classifier checkpoint"):
        load_classifier(tmp_path / "bad.pt")


def test_stand_in_names_are_never_fid(tmp_path) -> None:
    assert [m for m, stand_in in METRICS.items() if not stand_in] == ["fid"]
    assert "fid" not in reference_stats_path(tmp_path, "digits", "fd_digits").name.replace("_custom", "")
