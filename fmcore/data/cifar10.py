"""CIFAR-10 from the official python-version tarball ``cifar-10-python.tar.gz``.

The tarball's md5 (c58f30108f718f92721af3b95e74349a, the value torchvision checks) is verified
*before* anything inside it is read; an already extracted ``cifar-10-batches-py/`` folder is
accepted too, with each batch's official md5 checked before it is read. The batches
``cifar-10-batches-py/data_batch_1..5`` and
``test_batch`` are Python-2 pickles of ``{b"data": uint8 [10000, 3072] (channel-major, 3 x 32 x 32),
b"labels": [10000 ints], ...}``; they are read with :class:`RestrictedUnpickler`, which only
resolves numpy's array-reconstruction names (under ``numpy.core`` and numpy 2's ``numpy._core``)
and ``_codecs.encode`` (how Python 3 pickles ``bytes`` at protocol 2), so a batch cannot execute
code even if its checksum matched. Output: uint8 [50000, 3, 32, 32] train, [10000, 3, 32, 32] test.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from fmcore.data.errors import DataError
from fmcore.data.manifest import file_digest

__all__ = [
    "BATCH_MD5",
    "CIFAR10_MD5",
    "CIFAR10_TARBALL",
    "RestrictedUnpickler",
    "load_batch_bytes",
    "prepare_cifar10",
]

CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
DEFAULT_RAW = Path("data/raw/cifar10") / CIFAR10_TARBALL
_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
# Official md5 of each batch (as listed by torchvision's CIFAR10 dataset).
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


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


def _locate(raw: Path | None) -> tuple[str, Path]:
    """("tarball", path to cifar-10-python.tar.gz) or ("folder", path to cifar-10-batches-py/)."""
    path = raw if raw is not None else DEFAULT_RAW
    if path.is_dir():
        if (path / CIFAR10_TARBALL).is_file():
            return "tarball", path / CIFAR10_TARBALL
        folder = path if path.name == _FOLDER else path / _FOLDER
        if folder.is_dir():
            return "folder", folder
        raise DataError(f"{path}: holds neither {CIFAR10_TARBALL} nor {_FOLDER}/ (see docs/data.md)")
    if not path.is_file():
        raise DataError(f"{path}: missing; expected the official {CIFAR10_TARBALL} (see docs/data.md)")
    return "tarball", path


def _read_tarball(path: Path) -> dict[str, bytes]:
    wanted = {f"{_FOLDER}/{name}": name for name in (*TRAIN_BATCHES, TEST_BATCH)}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[wanted[member.name]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        msg = f"{path}: truncated or corrupt archive ({exc}); expected a complete gzip'd tar"
        raise DataError(msg) from None
    missing = sorted(f"{_FOLDER}/{n}" for n in wanted.values() if n not in found)
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}; expected the official CIFAR-10 layout")
    return found


def _read_folder(folder: Path) -> dict[str, bytes]:
    found = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        try:
            found[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{folder / name}: missing; expected the 6 batches of {_FOLDER}/") from None
    return found


def _check_batches(members: dict[str, bytes], where: Path, expected: dict[str, str]) -> dict[str, str]:
    """md5 of every batch against ``expected`` (before any unpickling); returns the md5s."""
    got = {name: hashlib.md5(raw).hexdigest() for name, raw in members.items()}
    for name in sorted(got):
        if name not in expected or got[name] != expected[name]:
            raise DataError(
                f"{where}/{name}: md5 {got[name]}, expected {expected.get(name)} (official CIFAR-10 batch)"
            )
    return got


def prepare_cifar10(cfg: dict, raw: Path | None, out_dir: Path) -> dict[str, Any]:
    """Verify checksums, decode the 6 batches and write uint8 splits + labels.

    From the tarball: its md5 first (``cfg['md5']``, default the official value), then, for the
    official archive, each batch's md5 too. From an extracted ``cifar-10-batches-py/`` folder:
    each batch's md5 (``cfg['batch_md5']``, default the official values) before it is unpickled.
    The overrides exist so that tests can run on miniatures.
    """
    kind, path = _locate(raw)
    checksums: dict[str, str] = {}
    if kind == "tarball":
        expected = cfg.get("md5", CIFAR10_MD5)
        md5 = file_digest(path, "md5")
        if md5 != expected:
            raise DataError(
                f"{path}: md5 {md5}, expected {expected} (official {CIFAR10_TARBALL}); re-download it"
            )
        checksums[CIFAR10_TARBALL] = f"md5:{md5}"
        checksums[f"{CIFAR10_TARBALL}.sha256"] = f"sha256:{file_digest(path)}"
        members = _read_tarball(path)
        batch_md5 = cfg.get("batch_md5", BATCH_MD5 if expected == CIFAR10_MD5 else None)
    else:
        members = _read_folder(path)
        batch_md5 = cfg.get("batch_md5", BATCH_MD5)
    if batch_md5 is not None:
        for name, md5 in _check_batches(members, path, batch_md5).items():
            checksums[f"{_FOLDER}/{name}"] = f"md5:{md5}"
    for split, names in {"train": TRAIN_BATCHES, "test": (TEST_BATCH,)}.items():
        parts = [load_batch_bytes(members[n], f"{path}:{_FOLDER}/{n}") for n in names]
        np.save(out_dir / f"{split}.npy", np.concatenate([p[0] for p in parts]))
        np.save(out_dir / f"{split}_labels.npy", np.concatenate([p[1] for p in parts]))
    info = {"layout": "python-version batches, channel-major", "read_from": kind}
    return {"source_checksums": checksums, "info": info}
