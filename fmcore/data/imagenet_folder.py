"""ImageNet 128x128 from an ILSVRC-2012 style folder of JPEGs.

Layout: ``<raw>/train/<wnid>/*.JPEG`` and ``<raw>/val/<wnid>/*.JPEG`` (val sorted into class
folders, as the common ``valprep.sh`` does; a flat ``val/*.JPEG`` is accepted with label -1).
Class ids are the sorted train ``wnid`` folders, 0-based.

Resizing follows ADM (Dhariwal & Nichol 2021, ``guided_diffusion/image_datasets.py::center_crop_arr``),
whose evaluation suite the paper used for ImageNet 128: convert to RGB; while the short side is
>= 2 * S halve the image with PIL ``BOX``; resize with PIL ``BICUBIC`` so the short side is S
(PIL's resize is antialiased); then center-crop S x S. Images are decoded in parallel by a
process pool (``cfg['workers']``, default all cores) with a tqdm progress bar, and written in
order into a memory-mapped uint8 [N, 3, S, S] ``.npy``.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from fmcore.data.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "center_crop_arr", "list_images", "prepare_imagenet_folder"]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def center_crop_arr(image: Image.Image, size: int) -> np.ndarray:
    """ADM's resize: BOX-halve while short side >= 2*size, BICUBIC to short side = size, center crop.

    Returns:
        uint8 array [size, size, 3].
    """
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(split_dir: Path, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    """Sorted image paths and labels of one split; ``classes`` None means "derive from folders"."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing; expected an ILSVRC-2012 style folder of <wnid>/*.JPEG")
    subdirs = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if classes is None:
        classes = subdirs
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    if subdirs:
        for wnid in subdirs:
            if wnid not in index:
                msg = f"class folder not among the {len(classes)} train classes"
                raise DataError(f"{split_dir / wnid}: {msg}")
            files = sorted(p for p in (split_dir / wnid).iterdir() if _is_image(p))
            paths += files
            labels += [index[wnid]] * len(files)
    else:
        paths = sorted(p for p in split_dir.iterdir() if _is_image(p))
        labels = [-1] * len(paths)
    if not paths:
        raise DataError(f"{split_dir}: no images (*.JPEG, *.jpg, *.png) found")
    return paths, labels, classes


def _load_one(job: tuple[str, int]) -> tuple[str, np.ndarray | None, str | None]:
    path, size = job
    try:
        with Image.open(path) as image:
            image.load()
            arr = center_crop_arr(image, size)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return path, None, f"{type(exc).__name__}: {exc}"
    return path, np.ascontiguousarray(arr.transpose(2, 0, 1)), None


def _write_split(paths: list[Path], labels: list[int], size: int, workers: int, out: Path, name: str) -> None:
    images = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.uint8,
                                       shape=(len(paths), 3, size, size))
    jobs = [(str(p), size) for p in paths]
    chunk = max(1, min(256, len(jobs) // (4 * workers)))
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        results = pool.map(_load_one, jobs, chunksize=chunk)
        for i, (path, arr, error) in enumerate(tqdm(results, total=len(jobs), desc=f"imagenet{size} {name}")):
            if error is not None:
                raise DataError(f"{path}: cannot decode as an image ({error}); expected a JPEG/PNG")
            images[i] = arr
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    images.flush()
    del images
    np.save(out / f"{name}_labels.npy", np.asarray(labels, dtype=np.int64))


def _listing_digest(root: Path, paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


def prepare_imagenet_folder(cfg: dict, raw: Path | None, out_dir: Path) -> dict[str, Any]:
    """Resize ``<raw>/train`` and ``<raw>/val`` to uint8 [N, 3, S, S] (S = cfg['resolution'], 128)."""
    size = cfg.get("resolution", 128)
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise DataError(f"datasets.*.resolution: {size!r}, expected an integer >= 8 (128 in the paper)")
    workers = cfg.get("workers", os.cpu_count() or 1)
    if not isinstance(workers, int) or workers < 1:
        raise DataError(f"datasets.*.workers: {workers!r}, expected a positive integer")
    root = raw if raw is not None else Path("data/raw/imagenet")
    train_paths, train_labels, classes = list_images(root / "train", None)
    val_paths, val_labels, _ = list_images(root / "val", classes)
    _write_split(train_paths, train_labels, size, workers, out_dir, "train")
    _write_split(val_paths, val_labels, size, workers, out_dir, "test")
    np.save(out_dir / "classes.npy", np.asarray(classes, dtype=np.str_))
    checksums = {
        "train/": f"listing-sha256:{_listing_digest(root, train_paths)}",
        "val/": f"listing-sha256:{_listing_digest(root, val_paths)}",
    }
    info = {"resolution": size, "resize": "ADM center_crop_arr (BOX halving, BICUBIC, center crop)",
            "classes": len(classes), "test_split": "val", "pil": Image.__version__}
    return {"source_checksums": checksums, "info": info}
