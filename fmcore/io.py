"""Atomic file writes: a reader never sees a half-written file where a good one was.

Every writer in fmcore goes through :func:`atomic_write`: the content is written to a
temporary file ``.<name>.<random>.tmp`` in the destination's directory (same file system),
flushed and fsync'ed, moved over the destination with ``os.replace`` (atomic on POSIX), and
the directory is fsync'ed so the rename survives a power cut. A crash at any point leaves
either the old complete file or the new complete file, plus at most a stale ``.*.tmp``
(removed by :func:`fmcore.training.checkpoint.remove_stale_temp` when a job restarts).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["atomic_savez", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "default_file_mode", "fsync_dir", "read_npy", "read_npz"]


def default_file_mode(directory: bool = False) -> int:
    """The mode a new file (0o666) or directory (0o777) gets under the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so that renames inside it are durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temp file that then replaces ``path``.

    Args:
        path: destination file; its directory is created if needed.
        write: callback that writes the whole content to the binary file object it gets.
        mode: file mode (default: what a new file gets under the umask); 0o600 for files
            that hold credentials or replayable records.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, default_file_mode() if mode is None else mode)  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data), mode=mode)


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (line endings as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` of plain (non-object) arrays, written atomically (read back with
    ``np.load(..., allow_pickle=False)``)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


# numpy's readers fail on damaged bytes with whatever the zip, zlib, header tokenizer or
# dtype parser raises (BadZipFile, zlib.error, EOFError, TypeError, TokenError, KeyError,
# NotImplementedError, ...; measured by fuzzing): every reader below turns any of them
# into one ValueError that names the file.


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, read eagerly with ``allow_pickle=False``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path: cannot read npz (<error>)`` for damaged, truncated or non-npz bytes
            and for pickled (object) arrays.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an npz archive")  # noqa: TRY004 - bad file content
        with loaded as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the comment above
        raise ValueError(f"{path}: cannot read npz ({type(exc).__name__}: {exc})") from None


def read_npy(path: str | Path, mmap_mode: str | None = None) -> np.ndarray:
    """One ``.npy`` array with ``allow_pickle=False`` (memory-mapped with ``mmap_mode``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path: cannot read npy (<error>)`` for damaged, truncated or non-npy bytes.
    """
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the comment above
        raise ValueError(f"{path}: cannot read npy ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"{path}: cannot read npy (an npz archive, expected a single array)")  # noqa: TRY004 - bad file content
    return array
