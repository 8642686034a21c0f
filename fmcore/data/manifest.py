"""``manifest.json`` of a prepared dataset: what it is, where it came from, and checksums.

Layout (docs/CONTRACTS.md)::

    {"format": "fmrepro-data-v1", "dataset": "digits", "source": "sklearn_digits",
     "kind": "image" | "points", "stand_in": bool, "params": {...},
     "shapes": {"train": [N, C, H, W], "test": [...]}, "counts": {"train": N, "test": M},
     "dtype": "uint8" | "float32", "source_checksums": {"<file>": "<algo>:<hex>", ...},
     "files": {"train.npy": "<sha256 hex>", ...}, "info": {...}}

The manifest has no timestamps, so preparing the same input with the same parameters gives a
byte-identical manifest and therefore the same :func:`dataset_hash`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from fmcore.io import atomic_write_bytes
from fmcore.data.errors import DataError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "build_manifest",
    "dataset_hash",
    "file_digest",
    "read_manifest",
    "same_identity",
    "verify",
    "write_manifest",
]

FORMAT_VERSION = "fmrepro-data-v1"
MANIFEST = "manifest.json"
_CHUNK = 1 << 22


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 4 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(
    out_dir: Path,
    dataset: str,
    source: str,
    params: dict,
    source_checksums: dict[str, str],
    info: dict[str, Any],
) -> dict:
    """Describe the ``*.npy`` files already written in ``out_dir`` (shapes read, sha256 computed)."""
    shapes, counts, dtypes, files = {}, {}, set(), {}
    for split in ("train", "test"):
        arr = np.load(out_dir / f"{split}.npy", mmap_mode="r", allow_pickle=False)
        shapes[split] = list(arr.shape)
        counts[split] = int(arr.shape[0])
        dtypes.add(str(arr.dtype))
    for path in sorted(out_dir.glob("*.npy")):
        files[path.name] = file_digest(path)
    if len(dtypes) != 1:
        raise DataError(f"{out_dir}: train and test dtypes differ ({sorted(dtypes)})")
    dtype = dtypes.pop()
    return {
        "format": FORMAT_VERSION,
        "dataset": dataset,
        "source": source,
        "kind": "points" if dtype == "float32" else "image",
        "stand_in": source in ("toy2d", "sklearn_digits"),
        "params": params,
        "shapes": shapes,
        "counts": counts,
        "dtype": dtype,
        "source_checksums": dict(sorted(source_checksums.items())),
        "files": files,
        "info": info,
    }


def _dumps(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_manifest(out_dir: Path, manifest: dict) -> None:
    """Write ``manifest.json`` (sorted keys, atomic)."""
    atomic_write_bytes(Path(out_dir) / MANIFEST, _dumps(manifest))


def read_manifest(data_dir: str | Path) -> dict:
    """Read ``<data_dir>/manifest.json``.

    Raises:
        DataError: missing, not JSON, or not an fmrepro prepared-data manifest.
    """
    path = Path(data_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = "missing; expected a prepared dataset (run `python -m fmcore.data prepare`)"
        raise DataError(f"{path}: {msg}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"unreadable manifest ({exc}); expected JSON written by fmcore.data"
        raise DataError(f"{path}: {msg}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{path}: format {got!r}, expected {FORMAT_VERSION!r}")
    return manifest


def dataset_hash(data_dir: str | Path) -> str:
    """sha256 of ``<data_dir>/manifest.json`` (logged by training as the ``fmrepro.data_hash`` tag)."""
    read_manifest(data_dir)
    return file_digest(Path(data_dir) / MANIFEST)


def same_identity(a: dict, b: dict) -> bool:
    """True when two manifests describe the same dataset built from the same parameters."""
    keys = ("format", "dataset", "source", "params")
    return all(a.get(k) == b.get(k) for k in keys)


def verify(data_dir: str | Path) -> dict:
    """Recompute the sha256 of every output file and compare with the manifest.

    This is how cache corruption or bit rot is caught before training.

    Returns:
        The manifest.

    Raises:
        DataError: a file is missing or its checksum differs (names the file).
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    files = manifest.get("files")
    if not isinstance(files, dict) or not {"train.npy", "test.npy"} <= set(files):
        raise DataError(f"{data_dir / MANIFEST}: 'files' must list train.npy and test.npy with sha256")
    for name, expected in sorted(files.items()):
        path = data_dir / name
        if not path.is_file():
            raise DataError(f"{path}: missing; the manifest lists it with sha256 {expected}")
        got = file_digest(path)
        if got != expected:
            raise DataError(f"{path}: sha256 {got} does not match the manifest ({expected}); re-run prepare")
    return manifest
