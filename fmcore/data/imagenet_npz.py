"""Downsampled ImageNet 32x32 / 64x64 in the npz batch format of Chrabaszcz et al. (2017).

Files (supplied by the user; licensing forbids fetching them): ``train_data_batch_1..10.npz``
and ``val_data.npz``, each with ``data`` (uint8 [N, 3*S*S], channel-major, i.e. reshape to
[N, 3, S, S]), ``labels`` (1-based class ids 1..1000) and, in the train batches, ``mean``.
Read with ``np.load(allow_pickle=False)``; written batch by batch into a memory-mapped
``.npy`` so 64x64 (1.28M images, 15.7 GB) never has to fit in RAM. Labels are stored 0-based.
The variant (``chrabaszcz2017``; the van den Oord et al. 2016 variant differs) is recorded in
the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fmcore.data.errors import DataError
from fmcore.data.manifest import file_digest

__all__ = ["TRAIN_FILES", "VAL_FILE", "prepare_imagenet_npz"]

TRAIN_FILES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
VAL_FILE = "val_data.npz"
# numpy/zipfile raise many types on damaged bytes (see fmcore.io.read_npz); any of them is a bad file
_READ_ERRORS = (Exception,)


def _open(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise DataError(f"{path}: missing; expected a downsampled-ImageNet npz batch (see docs/data.md)")
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: truncated or not an npz file ({exc})") from None


def _count(path: Path) -> int:
    with _open(path) as f:
        if "data" not in f.files or "labels" not in f.files:
            raise DataError(f"{path}: keys {sorted(f.files)}, expected 'data' and 'labels'")
        try:
            return int(np.asarray(f["labels"]).shape[0])
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: truncated or corrupt npz member 'labels' ({exc})") from None


def _read(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    with _open(path) as f:
        try:
            data, labels = f["data"], np.asarray(f["labels"])
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: truncated or corrupt npz member ({exc})") from None
    width = 3 * size * size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != width:
        raise DataError(
            f"{path}: data is {data.dtype} {list(data.shape)}, expected uint8 [N, {width}] "
            f"(3 x {size} x {size} channel-major images)"
        )
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu" or (
        labels.size and not (labels.min() >= 1 and labels.max() <= 1000)
    ):
        raise DataError(f"{path}: labels must be {data.shape[0]} integers in 1..1000 (1-based)")
    return data.reshape(-1, 3, size, size), labels.astype(np.int64) - 1


def _write_split(files: list[Path], size: int, out: Path, name: str) -> None:
    counts = [_count(p) for p in files]
    images = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.uint8,
                                       shape=(sum(counts), 3, size, size))
    labels = np.empty(sum(counts), dtype=np.int64)
    start = 0
    for path, n in tqdm(list(zip(files, counts)), desc=f"imagenet{size} {name}", unit="batch"):
        data, lab = _read(path, size)
        if len(lab) != n:
            raise DataError(f"{path}: {len(lab)} labels on the second read, {n} on the first; file changed")
        images[start:start + n] = data
        labels[start:start + n] = lab
        start += n
    images.flush()
    del images
    np.save(out / f"{name}_labels.npy", labels)


def prepare_imagenet_npz(cfg: dict, raw: Path | None, out_dir: Path) -> dict[str, Any]:
    """Convert the 10 train batches + val batch into train/test uint8 [N, 3, S, S] (S = cfg['resolution'])."""
    size = cfg.get("resolution")
    if size not in (32, 64):
        raise DataError(f"datasets.*.resolution: {size!r}, expected 32 or 64 for imagenet_npz")
    variant = cfg.get("variant", "chrabaszcz2017")
    if variant != "chrabaszcz2017":
        raise DataError(f"datasets.*.variant: {variant!r}, expected 'chrabaszcz2017' (the npz batch format)")
    root = raw if raw is not None else Path(f"data/raw/imagenet{size}")
    if not root.is_dir():
        expected = f"{TRAIN_FILES[0]}..{TRAIN_FILES[-1]} and {VAL_FILE}"
        raise DataError(f"{root}: missing; expected a folder with {expected}")
    train_files = [root / n for n in TRAIN_FILES]
    missing = [str(p) for p in [*train_files, root / VAL_FILE] if not p.is_file()]
    if missing:
        msg = f"missing ({len(missing)} of 11 npz files absent); expected the full set"
        raise DataError(f"{missing[0]}: {msg}")
    _write_split(train_files, size, out_dir, "train")
    _write_split([root / VAL_FILE], size, out_dir, "test")
    checksums = {p.name: f"sha256:{file_digest(p)}" for p in [*train_files, root / VAL_FILE]}
    info = {"variant": variant, "resolution": size,
            "test_split": VAL_FILE, "labels": "0-based (file labels - 1)"}
    return {"source_checksums": checksums, "info": info}
