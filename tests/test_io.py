"""fmcore.io readers: damaged array files fail with one ValueError naming the file, never a traceback."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from fmcore.data.errors import DataError
from fmcore.data.loaders import load_labels
from fmcore.io import atomic_savez, read_npy, read_npz


def _damaged(rng: random.Random, good: bytes) -> bytes:
    """Bit flips, a truncation or random bytes: what a disk, a copy or a user can produce."""
    data = bytearray(good)
    mode = rng.choice(["flip", "truncate", "random"])
    if mode == "flip":
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if mode == "truncate":
        return bytes(data[: rng.randrange(len(data))])
    return rng.randbytes(rng.randint(1, 300))


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, mu=np.arange(10.0), sigma=np.eye(10))
    return buf.getvalue()


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(100))
    return buf.getvalue()


def test_round_trip_and_wrong_container(tmp_path):
    atomic_savez(tmp_path / "a.npz", x=np.arange(3))
    np.save(tmp_path / "b.npy", np.ones(2))
    assert read_npz(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    assert read_npy(tmp_path / "b.npy", mmap_mode="r").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"b.npy: cannot read npz \(.*not an npz archive"):
        read_npz(tmp_path / "b.npy")
    with pytest.raises(ValueError, match=r"a.npz: cannot read npy \(an npz archive"):
        read_npy(tmp_path / "a.npz")
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "missing.npz")


def test_pickled_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="obj.npz: cannot read npz .*allow_pickle"):
        read_npz(tmp_path / "obj.npz")


@pytest.mark.parametrize("reader", ["npz", "npy", "labels"])
def test_damaged_files_give_one_line_naming_the_file(tmp_path, reader):
    """numpy raises BadZipFile, zlib.error, EOFError, TypeError, TokenError, NotImplementedError...
    on damaged bytes (found by this fuzzing); each reader must turn all of them into its error."""
    rng = random.Random(reader)
    good = _npz_bytes() if reader == "npz" else _npy_bytes()
    path = tmp_path / ("x.npz" if reader == "npz" else "test_labels.npy")
    read = {"npz": lambda: read_npz(path), "npy": lambda: read_npy(path),
            "labels": lambda: load_labels(tmp_path, "test")}[reader]
    expected = DataError if reader == "labels" else ValueError
    for trial in range(1500):
        path.write_bytes(_damaged(rng, good))
        try:
            read()
        except expected as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message, f"trial {trial}: {message!r}"
        # a flip inside the array data (not the header) still reads: the manifest's sha256 catches it
