"""Atomic file writes and a resumable per-batch cache for long evaluations.

Every file is written atomically through :mod:`fmcore.io`, so a crash never leaves a
half-written result where a good one was. ``BatchCache`` stores one small npz per finished batch
(``<dir>/batch_<i>.npz``) plus ``<dir>/fingerprint.json``; a rerun with the same
fingerprint loads finished batches instead of recomputing them, and a different
fingerprint (other checkpoint, other settings) starts afresh.

Sharding (``evaluate.<dataset>.shards`` = S): shard s of S computes the batches i with
i mod S = s and nothing else; the merge step then finds every batch on disk and
concatenates them exactly as an unsharded run would. A batch's content depends only on its
index (its samples and seeds), never on S, so the result is the same for any S.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fmcore.io import atomic_savez, atomic_write_json, read_npz

__all__ = ["BatchCache", "load_npz"]


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read an npz written by :func:`atomic_savez` (``allow_pickle=False``).

    Raises:
        ValueError: the file is missing or unreadable (one line, naming the file).
    """
    try:
        return read_npz(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: cannot read npz (no such file)") from None


class BatchCache:
    """Resumable computation of ``n_batches`` batches, one cached npz per finished batch.

    Args:
        directory: where the per-batch files live (created on demand).
        fingerprint: JSON-able description of everything the batches depend on.
    """

    def __init__(self, directory: str | Path, fingerprint: dict) -> None:
        self.directory = Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        stamp = self.directory / "fingerprint.json"
        if self.directory.exists():
            try:
                old = json.loads(stamp.read_text())
            except (OSError, ValueError):
                old = None
            if old != self.fingerprint:
                shutil.rmtree(self.directory, ignore_errors=True)
        if not self.directory.exists():
            # Created complete (stamp inside) and renamed into place: shards starting together
            # never see a directory without its fingerprint; a loser of the race uses the winner's.
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.", dir=self.directory.parent))
            atomic_write_json(tmp / "fingerprint.json", self.fingerprint)
            try:
                os.rename(tmp, self.directory)
            except OSError:  # another shard created it first (same fingerprint: same params)
                shutil.rmtree(tmp, ignore_errors=True)

    def _file(self, i: int) -> Path:
        return self.directory / f"batch_{i:06d}.npz"

    def run(
        self, n_batches: int, compute: Callable[[int], dict[str, np.ndarray]], desc: str,
        shard: tuple[int, int] | None = None,
    ) -> dict[str, np.ndarray] | None:
        """Return the batches' arrays concatenated along axis 0, computing only missing ones.

        ``compute(i)`` must be deterministic in ``i`` (seed each batch from its index).
        Scalars are stored as length-1 arrays, so they concatenate to one value per batch.
        With ``shard=(s, S)`` only the batches i with i mod S = s are made sure of (computed
        if missing) and None is returned: the merge step reads them all.
        """
        if shard is not None:
            index, count = shard
            for i in tqdm(range(index, n_batches, count), desc=f"{desc} [shard {index}/{count}]", leave=False):
                f = self._file(i)
                try:
                    load_npz(f)
                except ValueError:
                    part = {k: np.atleast_1d(np.asarray(v)) for k, v in compute(i).items()}
                    atomic_savez(f, **part)
            return None
        parts: list[dict[str, np.ndarray]] = []
        for i in tqdm(range(n_batches), desc=desc, leave=False):
            f = self._file(i)
            part = None
            if f.exists():
                try:
                    part = load_npz(f)
                except ValueError:
                    part = None
            if part is None:
                part = {k: np.atleast_1d(np.asarray(v)) for k, v in compute(i).items()}
                atomic_savez(f, **part)
            parts.append(part)
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}

    def clear(self) -> None:
        """Remove the cache once its result is stored elsewhere."""
        shutil.rmtree(self.directory, ignore_errors=True)
