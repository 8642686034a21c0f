"""scikit-learn's bundled 8x8 digits (offline stand-in for the image datasets; no download).

1,797 grey images with 17 levels v in {0..16}, mapped to uint8 exactly as
round(v * 255 / 16) = floor((255 v + 8) / 16) (integer arithmetic: 0 -> 0, 8 -> 128, 16 -> 255),
stored as [N, 1, 8, 8]. Split: ``sklearn.model_selection.train_test_split`` stratified by
label, ``test_size = test_fraction``, ``random_state = seed``. Labels go to ``*_labels.npy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmcore.data.errors import DataError

__all__ = ["digits_to_uint8", "prepare_digits"]


def digits_to_uint8(levels: np.ndarray) -> np.ndarray:
    """Map grey levels 0..16 to uint8 0..255 as round(v * 255 / 16), exactly."""
    v = np.asarray(levels)
    if v.min() < 0 or v.max() > 16 or not np.all(v == np.round(v)):
        raise DataError(f"digits: grey levels must be integers in 0..16, got range [{v.min()}, {v.max()}]")
    return ((v.astype(np.int64) * 255 + 8) // 16).astype(np.uint8)


def prepare_digits(cfg: dict, raw: Path | None, out_dir: Path) -> dict[str, Any]:
    """Write uint8 [N, 1, 8, 8] train/test splits and their labels from ``cfg`` = {test_fraction, seed}."""
    del raw  # bundled with scikit-learn
    from sklearn.datasets import load_digits  # heavy imports, only when needed
    from sklearn.model_selection import train_test_split

    frac = cfg.get("test_fraction", 0.2)
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 < frac < 1:
        raise DataError(f"datasets.digits.test_fraction: {frac!r}, expected a number in (0, 1)")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"datasets.digits.seed: {seed!r}, expected a non-negative integer")
    bunch = load_digits()
    images = digits_to_uint8(bunch.images)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=frac, random_state=seed, stratify=labels
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    np.save(out_dir / "train.npy", np.ascontiguousarray(images[idx_train]))
    np.save(out_dir / "test.npy", np.ascontiguousarray(images[idx_test]))
    np.save(out_dir / "train_labels.npy", labels[idx_train])
    np.save(out_dir / "test_labels.npy", labels[idx_test])
    info = {"levels": 17, "mapping": "round(v*255/16)", "split": "stratified train_test_split"}
    return {"source_checksums": {}, "info": info}
