"""Miniatures of the real raw formats (same layout, keys and encodings; a few images each)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cifar_batch_pickle(n: int, seed: int, legacy_numpy_name: bool = True) -> tuple[bytes, np.ndarray, list]:
    """A batch dict as in cifar-10-batches-py (bytes keys, protocol 2, like the Python-2 originals)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {b"batch_label": b"training batch", b"labels": labels, b"data": data,
             b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}
    raw = pickle.dumps(batch, protocol=2)
    if legacy_numpy_name:  # the originals were written by numpy 1.x: numpy.core.multiarray
        raw = raw.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct")
    return raw, data, labels


def make_cifar_tarball(path: Path, n: int = 4, overrides: dict[str, bytes] | None = None,
                       drop: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, list]]:
    """Write cifar-10-python.tar.gz with cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    content: dict[str, tuple[np.ndarray, list]] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        members = {}
        for i, name in enumerate(names):
            raw, data, labels = cifar_batch_pickle(n, seed=i, legacy_numpy_name=i % 2 == 0)
            members[name] = raw
            content[name] = (data, labels)
        members["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
        members["readme.html"] = b"<html></html>"
        members.update(overrides or {})
        for name, raw in members.items():
            if name in drop:
                continue
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return content


def make_imagenet_npz(root: Path, size: int, n: int = 3, compressed: bool = True) -> dict[str, dict]:
    """train_data_batch_1..10.npz (data, labels, mean) and val_data.npz (data, labels)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(size)
    save = np.savez_compressed if compressed else np.savez
    out = {}
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        arrays = {"data": rng.integers(0, 256, size=(n, 3 * size * size), dtype=np.uint8),
                  "labels": rng.integers(1, 1001, size=n).astype(np.int64)}
        if name.startswith("train"):
            arrays["mean"] = arrays["data"].mean(0)
        save(root / f"{name}.npz", **arrays)
        out[name] = arrays
    return out


def make_jpeg_folder(root: Path, sizes=((160, 120), (64, 300), (128, 128))) -> None:
    """ILSVRC-style train/<wnid>/*.JPEG and val/<wnid>/*.JPEG of varied sizes."""
    rng = np.random.default_rng(0)
    for split, wnids in (("train", ("n01440764", "n01443537")), ("val", ("n01440764", "n01443537"))):
        for w in wnids:
            d = root / split / w
            d.mkdir(parents=True, exist_ok=True)
            for k, (width, height) in enumerate(sizes[: 3 if split == "train" else 1]):
                arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{w}_{k}.JPEG", quality=90)
