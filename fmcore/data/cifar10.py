"""CIFAR-10 from the official python-version tarball ``cifar-10-python.tar.gz``.

The tarball's md5 (c58f30108f718f92721af3b95e74349a, the value torchvision checks) is verified
*before* anything inside it is read. The batches ``cifar-10-batches-py/data_batch_1..5`` and
``test_batch`` are Python-2 pickles of ``{b"data": uint8 [10000, 3072] (channel-major, 3 x 32 x 32),
b"labels": [10000 ints], ...}``; they are read with :class:`RestrictedUnpickler`, which only
resolves numpy's array-reconstruction names (under ``numpy.core`` and numpy 2's ``numpy._core``)
and ``_codecs.encode`` (how Python 3 pickles ``bytes`` at protocol 2), so a batch cannot execute
code even if its checksum matched. Output: uint8 [50000, 3, 32, 32] train, [10000, 3, 32, 32] test.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from fmcore.data.errors import DataError
from fmcore.data.manifest import file_digest

__all__ = ["CIFAR10_MD5", "CIFAR10_TARBALL", "RestrictedUnpickler", "load_batch_bytes", "prepare_cifar10"]

CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
DEFAULT_RAW = Path("data/raw/cifar10") / CIFAR10_TARBALL
_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that refuses every global except numpy array reconstruction (and bytes decoding)."""

    _ALLOWED = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the allow-listed names; anything else is an error naming it."""
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            msg = f"global '{module}.{name}' is not allowed in a CIFAR-10 batch"
            raise pickle.UnpicklingError(msg) from None


def load_batch_bytes(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch pickle into (images uint8 [N, 3, 32, 32], labels int64 [N])."""
    try:
        batch = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{where}: not a CIFAR-10 batch pickle ({exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a dict with b'data' and b'labels', got {type(batch).__name__}")
    images, labels = batch.get(b"data"), batch.get(b"labels")
    is_array = isinstance(images, np.ndarray)
    if not is_array or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        got = f"{images.dtype} {list(images.shape)}" if is_array else type(images).__name__
        raise DataError(f"{where}: b'data' is {got}, expected uint8 [N, 3072] (3 x 32 x 32 channel-major)")
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu" or (labels.size and not (
        0 <= labels.min() and labels.max() <= 9
    )):
        raise DataError(f"{where}: b'labels' must be {images.shape[0]} integers in 0..9")
    return images.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _tarball_path(raw: Path | None) -> Path:
    path = raw if raw is not None else DEFAULT_RAW
    if path.is_dir():
        path = path / CIFAR10_TARBALL
    if not path.is_file():
        raise DataError(f"{path}: missing; expected the official {CIFAR10_TARBALL} (see docs/data.md)")
    return path


def _read_members(path: Path) -> dict[str, bytes]:
    wanted = {f"{_FOLDER}/{name}" for name in (*TRAIN_BATCHES, TEST_BATCH)}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        msg = f"{path}: truncated or corrupt archive ({exc}); expected a complete gzip'd tar"
        raise DataError(msg) from None
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}; expected the official CIFAR-10 layout")
    return found


def prepare_cifar10(cfg: dict, raw: Path | None, out_dir: Path) -> dict[str, Any]:
    """Verify the tarball's md5, decode the 6 batches and write uint8 splits + labels.

    ``cfg['md5']`` (default the official value) exists so that tests can run on miniatures.
    """
    path = _tarball_path(raw)
    expected = cfg.get("md5", CIFAR10_MD5)
    md5 = file_digest(path, "md5")
    if md5 != expected:
        raise DataError(
            f"{path}: md5 {md5}, expected {expected} (official {CIFAR10_TARBALL}); re-download it"
        )
    members = _read_members(path)
    splits = {"train": TRAIN_BATCHES, "test": (TEST_BATCH,)}
    for split, names in splits.items():
        parts = [load_batch_bytes(members[f"{_FOLDER}/{n}"], f"{path}:{_FOLDER}/{n}") for n in names]
        np.save(out_dir / f"{split}.npy", np.concatenate([p[0] for p in parts]))
        np.save(out_dir / f"{split}_labels.npy", np.concatenate([p[1] for p in parts]))
    checksums = {CIFAR10_TARBALL: f"md5:{md5}", f"{CIFAR10_TARBALL}.sha256": f"sha256:{file_digest(path)}"}
    return {"source_checksums": checksums, "info": {"layout": "python-version batches, channel-major"}}
