"""Atomic outputs: never leave a half-written file or directory where a good one was.

A directory is built under a temporary name next to its destination (same filesystem), every
file is fsync'ed, and only then is it renamed into place. An existing destination is first moved
aside and deleted only after the new one is in place, so an interruption at any point leaves
either the old complete output or the new complete output (plus a stale ``.tmp-*`` directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fmcore.io import default_file_mode, fsync_dir

__all__ = ["atomic_dir"]


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``dest`` atomically.

    On an exception the temporary directory is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    os.chmod(tmp, default_file_mode(directory=True))  # mkdtemp makes 0700; use the usual directory mode
    try:
        yield tmp
        _fsync_tree(tmp)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
