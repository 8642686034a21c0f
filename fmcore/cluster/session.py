"""One training attempt on a cluster, around the training loop (used by ``fmcore.train``).

:class:`Attempt` bundles what a job does before and after the loop so that a campaign
finishes unattended:

1. ``open()``: copy the output into the attempt's own log (``fmcore.cluster.attempts``),
   say which SLURM job and incarnation this is (``requeued N times``), and take the run
   directory's writer lock (rank 0; other ranks wait until their rank 0 holds it). A
   duplicate job, e.g. one submitted by a restarted Snakemake controller while the first
   job still runs, waits here until the first one is done (``lock`` line in
   ``attempts.tsv``), then resumes from its final state: nothing left to train.
2. ``tags()``: MLflow tags of the attempt (SLURM job id, restart count, node list, attempt).
3. ``requeue_self()``: on the time-limit warning (``--signal=USR1@<lead>``), after the loop
   saved ``last.pt`` and MLflow was flushed, ``scontrol requeue`` the job: it goes back to
   PENDING with the same id, so the Snakemake executor keeps waiting and spends no retry.
4. ``close(outcome)``: one line in ``attempts.tsv``; release the lock.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from fmcore.cluster.attempts import AttemptLog, attempt_name
from fmcore.cluster.runlock import RunLock
from fmcore.cluster.slurm import SlurmJob, current_job, requeue

__all__ = ["Attempt", "launch_group"]


def launch_group(slurm: SlurmJob | None, env: dict[str, str] | None = None) -> str:
    """An id that every rank of one launch computes alike (and no other launch does)."""
    env = dict(os.environ) if env is None else env
    if slurm is not None:
        return f"slurm:{slurm.incarnation}.step{slurm.step_id}"
    if "TORCHELASTIC_RUN_ID" in env:
        return f"torchrun:{env['TORCHELASTIC_RUN_ID']}.r{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if "MASTER_ADDR" in env and "MASTER_PORT" in env and "WORLD_SIZE" in env:
        return f"ddp:{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    return f"{socket.gethostname()}:{os.getpid()}"


class Attempt:
    """The cluster side of one training attempt (see module docstring).

    Args:
        run_dir: the job's run directory (the lock lives there).
        rank: this process's DDP rank (0 takes the lock and writes the index).
        attempt_dir: where per-attempt logs and ``attempts.tsv`` go (None: no attempt logs).
        lock_poll_s: how often a waiting duplicate checks the holder.
    """

    def __init__(self, run_dir: str | Path, rank: int = 0, attempt_dir: str | Path | None = None,
                 lock_poll_s: float = 10.0) -> None:
        self.slurm = current_job()
        self.name = attempt_name(self.slurm)
        self.rank = rank
        self.lock = RunLock(run_dir, slurm=self.slurm, group=launch_group(self.slurm))
        self.log = AttemptLog(attempt_dir, self.name, rank) if attempt_dir is not None else None
        self.lock_poll_s = lock_poll_s
        self._held = False

    def say(self, message: str) -> None:
        if self.rank == 0:
            print(message, file=sys.stderr, flush=True)

    def open(self, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Start the attempt log and take the run directory; False if interrupted while waiting."""
        if self.log is not None:
            self.log.tee()
        where = f"attempt {self.name}, rank {self.rank}, on {socket.gethostname()}"
        if self.slurm is not None:
            n = self.slurm.restart_count
            where += (f" (SLURM job {self.slurm.job_id}, node {self.slurm.node_name or '?'} of "
                      f"{self.slurm.node_list or '?'}; requeued {n} time{'s' if n != 1 else ''} before)")
        if self.slurm is not None or self.log is not None:  # a plain local run stays quiet
            print(where, file=sys.stderr, flush=True)  # every rank: srun --label tells them apart
        self._record("start", detail=where)
        if self.rank == 0:
            held = self.lock.acquire(wait=True, poll_s=self.lock_poll_s, say=self.say, interrupted=interrupted)
            if held and self.lock.waited_for is not None:
                self._record("lock", detail=f"waited for {self.lock.waited_for.describe()}")
        else:
            held = self.lock.wait_for_group(interrupted=interrupted)
        self._held = held and self.rank == 0
        return held

    def tags(self) -> dict[str, str]:
        """MLflow tags of this attempt (set on every attempt: the latest one wins)."""
        tags = {"fmrepro.attempt": self.name}
        if self.slurm is not None:
            tags.update({"fmrepro.slurm.job_id": self.slurm.job_id,
                         "fmrepro.slurm.restart_count": str(self.slurm.restart_count),
                         "fmrepro.slurm.nodelist": self.slurm.node_list})
        return tags

    def requeue_self(self) -> bool:
        """Rank 0 under SLURM: put the job back in the queue (same id); False if not possible."""
        if self.rank != 0 or self.slurm is None:
            return False
        ok, why = requeue(self.slurm.job_id)
        if ok:
            self.say(f"requeued SLURM job {self.slurm.job_id} (restart {self.slurm.restart_count + 1} next); "
                     "it resumes from last.pt when it starts again")
        else:
            self.say(f"could not requeue SLURM job {self.slurm.job_id} ({why}); exiting for a retry instead")
        return ok

    def close(self, outcome: str, step: int | None = None, detail: str = "") -> None:
        """Record how the attempt ended, release the lock, stop copying the output."""
        self._record("end", step=step, outcome=outcome, detail=detail)
        if self._held:
            self.lock.release()
            self._held = False
        if self.log is not None:
            self.log.close()

    def _record(self, event: str, step: int | None = None, outcome: str = "", detail: str = "") -> None:
        if self.log is not None:
            self.log.record(event, step=step, outcome=outcome, detail=detail, host=socket.gethostname())
