"""``prepare``: raw input -> ``<out>/{train,test}.npy`` + ``manifest.json``, atomically.

Each source module exposes ``prepare_<source>(cfg, raw, out_dir) -> {"source_checksums", "info"}``
and writes its ``.npy`` files into ``out_dir`` (a temporary directory); this module checks the
destination first, then builds the manifest and renames the directory into place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmcore.data.atomic import atomic_dir
from fmcore.data.cifar10 import prepare_cifar10
from fmcore.data.digits import prepare_digits
from fmcore.data.errors import DataError
from fmcore.data.imagenet_folder import prepare_imagenet_folder
from fmcore.data.imagenet_npz import prepare_imagenet_npz
from fmcore.data.loaders import check_finite
from fmcore.data.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    build_manifest,
    read_manifest,
    same_identity,
    verify,
)
from fmcore.data.manifest import write_manifest as _write_manifest
from fmcore.data.toy2d import prepare_toy2d
from fmcore.io import read_npy

__all__ = ["SOURCES", "prepare"]

SOURCES: dict[str, Callable[[dict, Path | None, Path], dict[str, Any]]] = {
    "toy2d": prepare_toy2d,
    "sklearn_digits": prepare_digits,
    "cifar10": prepare_cifar10,
    "imagenet_npz": prepare_imagenet_npz,
    "imagenet_folder": prepare_imagenet_folder,
}


def _check_destination(out: Path, identity: dict, force: bool) -> bool:
    """True when ``out`` already holds this exact dataset, intact (nothing to do).

    Raises:
        DataError: ``out`` holds something else (another dataset, other params, or foreign files).
    """
    if not out.exists():
        return False
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; expected a prepared dataset directory")
    if not any(out.iterdir()):
        return False
    if not (out / MANIFEST).exists():
        raise DataError(f"{out}: not empty and has no {MANIFEST}; refusing to overwrite unknown files")
    try:
        old = read_manifest(out)
    except DataError as exc:
        raise DataError(f"{exc}; refusing to overwrite (move it away first)") from None
    if old.get("dataset") != identity["dataset"] or old.get("source") != identity["source"]:
        raise DataError(
            f"{out / MANIFEST}: holds dataset {old.get('dataset')!r} ({old.get('source')}), "
            f"expected {identity['dataset']!r} ({identity['source']}); refusing to overwrite"
        )
    if force:
        return False
    if not same_identity(old, identity):
        old_params, new_params = old.get("params") or {}, identity["params"]
        keys = sorted(k for k in {*old_params, *new_params} if old_params.get(k) != new_params.get(k))
        diff = ", ".join(f"{k}: {old_params.get(k)!r} -> {new_params.get(k)!r}" for k in keys)
        raise DataError(
            f"{out / MANIFEST}: holds {identity['dataset']!r} prepared with other params "
            f"({diff or 'format'}); refusing to overwrite (use --force or remove it; "
            "`dvc repro` and snakemake remove it themselves)"
        )
    try:
        verify(out)
    except DataError:
        return False  # same dataset, damaged files: rebuild (atomically) in place
    return True


def prepare(
    dataset: str,
    cfg: dict,
    out: str | Path,
    raw: str | Path | None = None,
    force: bool = False,
) -> dict:
    """Prepare ``dataset`` described by ``cfg`` (its ``params['datasets'][dataset]`` entry) into ``out``.

    Args:
        dataset: dataset name (the key under ``datasets:``).
        cfg: the dataset's params; ``cfg['source']`` picks the reader.
        out: destination directory, e.g. ``data/prepared/<dataset>``.
        raw: raw input path; overrides ``cfg['raw']``.
        force: rebuild even when ``out`` already holds this dataset (same or other params).

    Returns:
        The manifest of ``out``.

    Raises:
        DataError: bad parameters or raw input, or ``out`` holds a different dataset (or, without
            ``force``, the same dataset prepared with other params).
    """
    if not isinstance(cfg, dict) or cfg.get("source") not in SOURCES:
        got = cfg.get("source") if isinstance(cfg, dict) else cfg
        raise DataError(f"datasets.{dataset}.source: {got!r}, expected one of {sorted(SOURCES)}")
    out = Path(out)
    params = copy.deepcopy(cfg)
    identity = {"format": FORMAT_VERSION, "dataset": dataset, "source": cfg["source"], "params": params}
    if _check_destination(out, identity, force):
        return read_manifest(out)
    raw_path = Path(raw) if raw is not None else (Path(cfg["raw"]) if cfg.get("raw") else None)
    with atomic_dir(out) as tmp:
        result = SOURCES[cfg["source"]](cfg, raw_path, tmp)
        for split in ("train", "test"):  # a reader fed NaN/inf raw data must not produce a dataset
            if (tmp / f"{split}.npy").is_file():
                check_finite(read_npy(tmp / f"{split}.npy", mmap_mode="r"), out / f"{split}.npy")
        manifest = build_manifest(
            tmp, dataset, cfg["source"], params, result["source_checksums"], result["info"]
        )
        _write_manifest(tmp, manifest)
    return manifest
