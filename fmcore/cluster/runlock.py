"""One writer per run directory: a lock file that names its holder.

``<run_dir>/.writer.lock`` is a small JSON file ``{"host", "pid", "proc_start",
"slurm_job_id", "slurm_restart", "group", "acquired"}``, created atomically (written to a
temporary file, then ``os.link``-ed to the lock name, which fails if the name exists: this
works on NFS and Lustre, where ``flock`` may not). While held, a heartbeat thread touches
the file every ``heartbeat_s`` seconds.

A holder is **gone** (its lock is stale and is taken over) when
- it ran on this host and its process no longer exists (pid + process start time), or
- it ran in a SLURM job that ``squeue`` no longer lists as running, or is an earlier
  incarnation (restart count) of this process's own job, or
- neither check applies (another host, no SLURM) and the heartbeat is older than
  ``stale_after_s``.

A second writer either refuses at once (:class:`RunLockHeld`, one line naming the holder)
or waits until the holder releases the lock or is gone. Ranks other than 0 of a DDP job do
not take the lock: they :meth:`RunLock.wait_for_group` until rank 0 of their own launch
(same ``group``) holds it, so no rank starts before the directory is theirs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from fmcore.cluster.slurm import ACTIVE_STATES, SlurmJob, job_state

__all__ = ["LOCK_NAME", "Holder", "RunLock", "RunLockHeld"]

LOCK_NAME = ".writer.lock"


class RunLockHeld(RuntimeError):
    """Another live process holds the run directory."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a run directory."""

    host: str
    pid: int
    proc_start: str  # /proc/<pid>/stat start time: tells a reused pid apart
    slurm_job_id: str | None
    slurm_restart: int | None
    group: str  # shared by the ranks of one launch (see RunLock.wait_for_group)
    acquired: str

    def describe(self) -> str:
        where = f"host {self.host} pid {self.pid}"
        if self.slurm_job_id:
            where += f", SLURM job {self.slurm_job_id} (restart {self.slurm_restart})"
        return f"{where}, since {self.acquired}"


def _proc_start(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, starttime in clock ticks


def _pid_alive(pid: int, proc_start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not proc_start or _proc_start(pid) in ("", proc_start)


class RunLock:
    """The writer lock of one run directory (see module docstring).

    Args:
        run_dir: the directory to hold.
        slurm: this process's SLURM job (``fmcore.cluster.current_job()``), None outside SLURM.
        group: the launch id every rank of this process's DDP group shares.
        stale_after_s: heartbeat age after which a holder that cannot be checked is gone.
        heartbeat_s: how often a held lock is touched.
    """

    def __init__(self, run_dir: str | Path, slurm: SlurmJob | None = None, group: str | None = None,
                 stale_after_s: float = 600.0, heartbeat_s: float = 30.0) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        pid = os.getpid()
        self.me = Holder(host=socket.gethostname(), pid=pid, proc_start=_proc_start(pid),
                         slurm_job_id=slurm.job_id if slurm else None,
                         slurm_restart=slurm.restart_count if slurm else None,
                         group=group or f"{socket.gethostname()}:{pid}",
                         acquired=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self.waited_for: Holder | None = None  # the live holder acquire() waited for, if any
        self._made_dir = False  # acquire() created the run directory: release() removes it if empty
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    # -- reading and judging ------------------------------------------------------------
    def holder(self) -> tuple[Holder | None, str]:
        """The current holder (None if unlocked or unreadable) and the file's raw text."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, ""
        try:
            return Holder(**json.loads(text)), text
        except (ValueError, TypeError):
            return None, text

    def gone_reason(self, h: Holder) -> str | None:
        """Why ``h`` no longer holds the directory, or None when it may still be writing."""
        if h.host == self.me.host:
            return None if _pid_alive(h.pid, h.proc_start) else f"process {h.pid} on {h.host} has exited"
        if h.slurm_job_id:
            if h.slurm_job_id == self.me.slurm_job_id and (h.slurm_restart or 0) < (self.me.slurm_restart or 0):
                return f"SLURM job {h.slurm_job_id} was requeued since (restart {h.slurm_restart})"
            try:
                state = job_state(h.slurm_job_id)
            except OSError:
                state = "UNKNOWN"
            if state is None or (state != "UNKNOWN" and state not in ACTIVE_STATES):
                return f"SLURM job {h.slurm_job_id} is {state or 'no longer listed'}"
            if state != "UNKNOWN":
                return None
        age = self._age()
        return f"no heartbeat for {age:.0f} s" if age is not None and age > self.stale_after_s else None

    def _age(self) -> float | None:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    # -- taking and releasing -----------------------------------------------------------
    def _try_create(self) -> bool:
        tmp = self.path.with_name(f"{LOCK_NAME}.{self.me.host}.{self.me.pid}.tmp")
        if not tmp.parent.is_dir():
            tmp.parent.mkdir(parents=True, exist_ok=True)
            self._made_dir = True
        tmp.write_text(json.dumps(asdict(self.me)), encoding="utf-8")
        try:
            os.link(tmp, self.path)  # atomic, fails if the lock exists (also on NFS/Lustre)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over(self, seen_text: str) -> None:
        """Move a stale lock aside, unless another process replaced it meanwhile."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{self.me.host}.{self.me.pid}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if aside.read_text(encoding="utf-8") != seen_text:  # a live holder's lock: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def acquire(self, wait: bool = True, poll_s: float = 10.0, timeout_s: float | None = None,
                say: Callable[[str], None] = print, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Take the lock; returns True once held, False if ``interrupted()`` became true first.

        Raises:
            RunLockHeld: the holder is alive and ``wait`` is False, or ``timeout_s`` passed.
        """
        t0, said = time.monotonic(), None
        while True:
            if self._try_create():
                self._start_heartbeat()
                return True
            h, text = self.holder()
            if h is None:  # being written, or damaged: judge by age alone
                age = self._age()
                if age is not None and age > 60.0:
                    say(f"{self.path}: unreadable lock, {age:.0f} s old; taking it over")
                    self._take_over(text)
                elif interrupted():
                    return False
                else:
                    time.sleep(min(poll_s, 1.0))
                continue
            reason = self.gone_reason(h)
            if reason is not None:
                say(f"{self.path}: taking over the lock of {h.describe()}: {reason}")
                self._take_over(text)
                continue
            msg = f"{self.path.parent}: run directory held by {h.describe()}"
            if not wait or (timeout_s is not None and time.monotonic() - t0 > timeout_s):
                raise RunLockHeld(f"{msg}; refusing to write beside it")
            if interrupted():
                return False
            if said != text:
                say(f"{msg}; waiting for it to finish (checking every {poll_s:.0f} s)")
                said, self.waited_for = text, h
            time.sleep(poll_s)

    def wait_for_group(self, poll_s: float = 2.0, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Ranks > 0: wait until the lock is held by this launch's rank 0 (same ``group``)."""
        while True:
            h, _ = self.holder()
            if h is not None and h.group == self.me.group:
                return True
            if interrupted():
                return False
            time.sleep(poll_s)

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    os.utime(self.path)
                except OSError:
                    pass

        self._beat = threading.Thread(target=beat, name="fmcore-runlock", daemon=True)
        self._beat.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this process's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5.0)
            self._beat = None
        h, _ = self.holder()
        if h is not None and (h.host, h.pid, h.proc_start) == (self.me.host, self.me.pid, self.me.proc_start):
            self.path.unlink(missing_ok=True)
        if self._made_dir:  # a run that wrote nothing (refused its input) leaves no directory behind
            try:
                self.path.parent.rmdir()
            except OSError:
                pass

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
