"""Logs that survive retries and requeues: one log file per attempt and rank, and an index.

Snakemake clears a rule's log before each attempt, and a requeued SLURM job writes over
its own output. So a training job also writes, under ``<attempt_dir>/``:

- ``<attempt>.rank<r>.log``: everything the process prints (Python-level stdout/stderr,
  tracebacks included) of one attempt on one rank. ``<attempt>`` is
  ``slurm<job_id>.r<restart>`` under SLURM (a requeue keeps the job id and increments the
  restart count; a Snakemake retry is a new job id), ``local-<time>-<pid>`` otherwise.
- ``attempts.tsv``: one line per event (``start``, ``end``) of every attempt, written by rank
  0 with its outcome: ``finished``, ``requeued`` (time-limit warning: the job requeued
  itself), ``preempted`` (SIGTERM: state saved, exit 75), ``failed`` (and the first line of
  the error), or ``waiting`` for another writer. An attempt with a ``start`` and no ``end``
  was killed without warning (SIGKILL, node failure).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TextIO

from fmcore.cluster.slurm import SlurmJob

__all__ = ["AttemptLog", "attempt_name"]

COLUMNS = ("time", "attempt", "event", "host", "step", "outcome", "detail")


def attempt_name(slurm: SlurmJob | None, env: dict[str, str] | None = None) -> str:
    """The attempt's id: ``slurm<id>.r<restart>``, or ``local-<time>-<pid>`` outside SLURM.

    torchrun ranks share ``TORCHELASTIC_RUN_ID`` and ``TORCHELASTIC_RESTART_COUNT``, so all
    ranks of one torchrun launch get one name.
    """
    env = dict(os.environ) if env is None else env
    if slurm is not None:
        return f"slurm{slurm.job_id}.r{slurm.restart_count}"
    if "TORCHELASTIC_RUN_ID" in env:
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}.r{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return f"local-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"


class _Tee:
    """A text stream that writes to the original stream and to the attempt's file."""

    def __init__(self, stream: TextIO, file: TextIO) -> None:
        self._stream, self._file = stream, file

    def write(self, text: str) -> int:
        try:
            self._file.write(text)
            self._file.flush()
        except (OSError, ValueError):  # full disk or closed file: the main stream still works
            pass
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ... of the real stream
        return getattr(self._stream, name)


class AttemptLog:
    """The per-attempt log of one rank and (rank 0) the attempts index (see module docstring)."""

    def __init__(self, attempt_dir: str | Path, attempt: str, rank: int = 0) -> None:
        self.dir, self.attempt, self.rank = Path(attempt_dir), attempt, rank
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{attempt}.rank{rank}.log"
        self._file: TextIO | None = None
        self._saved: tuple[TextIO, TextIO] | None = None

    def tee(self) -> AttemptLog:
        """From now on, copy this process's stdout and stderr into the attempt's log file."""
        self._file = open(self.log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Tee(sys.stdout, self._file), _Tee(sys.stderr, self._file)
        return self

    def record(self, event: str, step: int | None = None, outcome: str = "", detail: str = "",
               host: str = "") -> None:
        """Append one line to ``attempts.tsv`` (rank 0 only)."""
        if self.rank != 0:
            return
        index = self.dir / "attempts.tsv"
        fields = (time.strftime("%Y-%m-%dT%H:%M:%S%z"), self.attempt, event, host,
                  "" if step is None else str(step), outcome, " ".join(detail.split())[:300])
        line = "\t".join(f.replace("\t", " ") for f in fields) + "\n"
        try:
            new = not index.exists()
            with open(index, "a", encoding="utf-8") as f:  # one short O_APPEND write per event
                f.write(("\t".join(COLUMNS) + "\n" if new else "") + line)
        except OSError as exc:
            print(f"warning: {index}: {exc.strerror or exc}; attempt not recorded", file=sys.stderr)

    def close(self) -> None:
        """Stop copying output and close the attempt's file."""
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        if self._file is not None:
            self._file.close()
            self._file = None
