"""The Tracker: one MLflow run, delivered from a background thread with an outage spool.

The behaviour (background delivery, spool, retries, ``flush``) is described once, in the
package docstring of :mod:`fmcore.tracking`.
"""


from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fmcore.io import atomic_savez
from fmcore.tracking.base import flatten_params, mask_secrets, redact_uri, scrub, standard_tags, tracking_uri
from fmcore.tracking.spool import Spool
from fmcore.tracking.store import BATCH, Store

__all__ = ["NullTracker", "Tracker", "flush_spool", "start_run"]

CLOSE_TRIES = 3  # delivery attempts at close() before records are left in the spool


class Tracker:
    """One MLflow run, logged asynchronously with an on-disk spool (see module docstring).

    Args:
        uri: tracking URI (``tracking_uri()`` by default).
        spool_path: JSONL file for undelivered records (:class:`fmcore.tracking.spool.Spool`:
            signed, 0600, replayed by the next tracker of the same directory); None keeps them
            in memory only.
        retry_s: first back-off after a failure, doubled up to ``max_retry_s``.
        interval_s: how often queued records are delivered in one batch.
    """

    def __init__(self, uri: str | None = None, spool_path: str | Path | None = None,
                 retry_s: float = 0.5, max_retry_s: float = 15.0, interval_s: float = 1.0,
                 quiet: bool = False) -> None:
        self.uri = uri or tracking_uri()
        self.spool_path = Path(spool_path) if spool_path is not None else None
        self._spool = Spool(self.spool_path) if self.spool_path is not None else None
        self.run_id: str | None = None
        self._pending: list[dict] = []  # owned by the worker thread (and by flush_spool)
        self._incoming: list[dict] = []
        self._lock = threading.Lock()
        self._spool_lock = threading.RLock()  # serialises every write of the spool file
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._retry_s, self._max_retry_s, self._interval_s = retry_s, max_retry_s, interval_s
        self._quiet, self._warned = quiet, False
        self._failures = 0  # delivery attempts that failed (flush() watches it)
        self._close_deadline = float("inf")  # set by close(): retries at closing stop there
        self._store: Store | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._thread: threading.Thread | None = None
        self._spool_uri: str | None = None  # the (redacted) URI a replayed spool was written for
        self._refused = 0  # spool lines refused at load (not written by this directory's tracker)
        if self._spool is not None and self._spool.exists():
            self._load_spool()

    # -- public API (main thread) -------------------------------------------------------
    def start(self, experiment: str, run_name: str, tags: Mapping[str, str] | None = None,
              params: Mapping[str, Any] | None = None, run_id: str | None = None,
              parent_run_id: str | None = None) -> Tracker:
        """Create the run (or continue ``run_id``) and start the background worker."""
        # A spool whose state names a run (created before a kill that left no checkpoint
        # with its id) continues that run, as does an explicit run_id.
        run_id = run_id or (self.run_id if not any(r["op"] == "start" for r in self._pending) else None)
        if run_id is not None:
            self.run_id = run_id
            self._put({"op": "resume", "run_id": run_id})
        elif not any(r["op"] == "start" for r in self._pending):  # a spooled start is replayed
            tags = {**standard_tags(), **(tags or {}),
                    **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}
            self._put({"op": "start", "key": uuid.uuid4().hex, "experiment": experiment, "run_name": run_name,
                       "tags": {k: str(v) for k, v in tags.items()},
                       "params": mask_secrets(flatten_params(params or {}))})
        self._thread = threading.Thread(target=self._work, name="fmcore-tracking", daemon=True)
        self._thread.start()
        return self

    def log_metrics(self, values: Mapping[str, float], step: int) -> None:
        """Queue metrics at a step (timestamped now); never blocks on MLflow."""
        self._put({"op": "metrics", "step": int(step), "ts": int(time.time() * 1000),
                   "values": {k: float(v) for k, v in values.items()}})

    def set_tags(self, values: Mapping[str, Any]) -> None:
        """Queue run tags."""
        self._put({"op": "tags", "values": {k: str(v) for k, v in values.items()}})

    def log_input(self, name: str, digest: str, source: str, context: str = "train") -> None:
        """Queue a dataset input of the run (MLflow's Dataset column): name, content hash, location."""
        self._put({"op": "input", "name": name, "digest": digest, "source": source, "context": context})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Queue a file as an artifact; the file must still exist when it is delivered.

        Raises:
            ValueError: with a spool, ``path`` is not inside the spool's directory (only the
                run directory's own files are uploaded; a replayed spool is held to the same rule).
        """
        if self._spool is not None and not self._spool.inside(path):
            raise ValueError(f"{path}: artifact outside the run directory {self._spool.folder}")
        self._put({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_npz(self, name: str, **arrays: np.ndarray) -> Path:
        """Save ``arrays`` to ``name`` (npz) beside the spool (or in a temp dir) and log it."""
        if self.spool_path is not None:
            folder = self.spool_path.parent / "mlflow_artifacts"
        else:
            self._tmpdir = self._tmpdir or tempfile.TemporaryDirectory(prefix="fmcore-mlflow-")
            folder = Path(self._tmpdir.name)
        folder.mkdir(parents=True, exist_ok=True)
        path = atomic_savez(folder / name, **arrays)
        self.log_artifact(path)
        return path

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is delivered.

        Returns False if records are still pending after ``timeout``, or as soon as a
        delivery attempt made after this call fails (the store is down: no point waiting).
        """
        failures = self._failures
        self._idle.clear()
        self._wake.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.wait(0.05) and not self._has_work():
                return True
            if self._failures > failures + 1 or (self._failures > failures and not self._wake.is_set()):
                return not self._has_work()
        return not self._has_work()

    def close(self, status: str = "FINISHED", timeout: float = 60.0) -> bool:
        """End the run with ``status`` (FINISHED, FAILED, KILLED) and deliver what is pending.

        Returns True when nothing is left in the spool.
        """
        self._put({"op": "end", "status": status})
        self._close_deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        left = self._has_work()
        if left:
            self._write_spool()
            self._say(f"MLflow: {len(self._pending) + len(self._incoming)} records not delivered; "
                      f"they are in {self.spool_path or 'memory (lost)'}; deliver them with "
                      f"'python -m fmcore.tracking flush {self.spool_path}'")
        if self._tmpdir is not None and not left:
            self._tmpdir.cleanup()
        return not left

    # -- worker -------------------------------------------------------------------------
    def _put(self, rec: dict) -> None:
        # Journal each record to the spool before it is delivered: a SIGKILL (preemption, OOM)
        # then loses nothing a resumed run will not log again (the next Tracker replays the spool).
        with self._spool_lock:
            with self._lock:
                self._incoming.append(rec)
            if self._spool is not None:
                try:
                    if self._spool.exists():
                        self._spool.append(rec)
                    else:
                        self._write_spool()
                except OSError:  # full disk: the record stays queued in memory
                    pass

    def _has_work(self) -> bool:
        with self._lock:
            return bool(self._pending or self._incoming)

    def _say(self, msg: str) -> None:
        if not self._quiet:
            print(msg, file=sys.stderr, flush=True)

    def _work(self) -> None:
        delay, closing_tries = self._retry_s, 0
        while True:
            # Deliver in batches every ``interval_s`` (or at once on flush/close); after a
            # failure, back off.
            self._wake.wait(delay if self._pending else self._interval_s)
            self._wake.clear()
            stopping = self._stop.is_set()
            if self._try_deliver():
                delay = self._retry_s
                self._idle.set()
                if stopping:
                    return
            else:
                # closing: a few quick retries (a store busy with many writers refuses now and
                # then), never past close()'s timeout; a store that stays down leaves the spool
                closing_tries += stopping
                if stopping and (closing_tries >= CLOSE_TRIES or time.monotonic() + delay >= self._close_deadline):
                    return
                delay = min(delay * 2, self._max_retry_s)

    def _try_deliver(self) -> bool:
        with self._lock:
            self._pending.extend(self._incoming)
            self._incoming.clear()
        try:
            if self._store is None:
                self._store = Store(self.uri)
            while self._pending:
                n = self._deliver_head()
                with self._lock:
                    del self._pending[:n]
        except Exception as exc:  # noqa: BLE001 - any store failure means "buffer and retry"
            self._store = None if "locked" not in str(exc) else self._store
            if not self._warned:
                self._warned = True
                why = scrub(str(exc).splitlines()[0][:200], self.uri) if str(exc) else ""
                self._say(f"MLflow tracking store {redact_uri(self.uri)} unavailable ({type(exc).__name__}: "
                          f"{why}); buffering records in "
                          f"memory and {self.spool_path or 'no spool file'}, retrying in the background")
            self._write_spool()
            self._failures += 1  # after the spool is on disk: flush() may return right away
            return False
        if self._warned:
            self._warned = False
            self._say(f"MLflow tracking store {redact_uri(self.uri)} reachable again; buffered records delivered")
        with self._spool_lock:  # keep journaled records queued meanwhile, drop the delivered ones
            try:
                if self._spool is not None and self._has_work():
                    self._write_spool()
                elif self._spool is not None:
                    self._spool.remove()
            except OSError:  # full disk: the records stay queued in memory
                pass
        return True

    def _deliver_head(self) -> int:
        """Deliver the first pending record (consecutive metrics in one batch); return how many."""
        head = self._pending[0]
        if head["op"] != "metrics":
            self.run_id = self._store.deliver(self.run_id, head)
            return 1
        n, total = 0, 0
        while n < len(self._pending) and self._pending[n]["op"] == "metrics":
            total += len(self._pending[n]["values"])
            if total > BATCH and n:
                break
            n += 1
        from mlflow.entities import Metric

        ms = [Metric(k, v, r["ts"], r["step"]) for r in self._pending[:n] for k, v in r["values"].items()]
        self._store.client.log_batch(self.run_id, metrics=ms)
        return n

    # -- spool file ---------------------------------------------------------------------
    def _write_spool(self) -> None:
        if self._spool is None:
            return
        with self._spool_lock:
            with self._lock:
                records = [*self._pending, *self._incoming]
            self._spool.rewrite(self.run_id, redact_uri(self.uri), records)

    def _load_spool(self) -> None:
        contents = self._spool.load()
        self._refused = len(contents.refused)
        if contents.refused:
            self._say(f"{self.spool_path}: ignored {len(contents.refused)} record(s) this run directory's "
                      f"tracker did not write ({contents.refused[0]}); a copy is in "
                      f"{self.spool_path.name}.rejected")
        self.run_id = self.run_id or contents.run_id
        self._spool_uri = contents.uri
        self._pending.extend(contents.records)


class NullTracker(Tracker):
    """A tracker that records nothing (tests, ranks other than 0)."""

    def __init__(self) -> None:
        super().__init__(uri="null://", spool_path=None, quiet=True)

    def start(self, *args: Any, **kwargs: Any) -> Tracker:  # noqa: D102
        return self

    def _put(self, rec: dict) -> None:
        pass

    def flush(self, timeout: float = 0.0) -> bool:  # noqa: D102
        return True

    def close(self, status: str = "FINISHED", timeout: float = 0.0) -> bool:  # noqa: D102
        return True


def start_run(experiment: str, run_name: str, tags: Mapping[str, str] | None = None,
              params: Mapping[str, Any] | None = None, run_id: str | None = None,
              parent_run_id: str | None = None, spool_path: str | Path | None = None,
              uri: str | None = None) -> Tracker:
    """Start (or, with ``run_id``, continue) an MLflow run; ``parent_run_id`` links it to a training run.

    Params are flattened to dotted keys and secret-looking keys masked. ``tracker.run_id``
    is known once the background worker has created the run (``tracker.flush()`` waits).
    """
    return Tracker(uri=uri, spool_path=spool_path).start(experiment, run_name, tags=tags, params=params,
                                                         run_id=run_id, parent_run_id=parent_run_id)


def flush_spool(spool_path: str | Path, uri: str | None = None, timeout: float = 120.0) -> bool:
    """Deliver the records left in a spool file to ``uri`` (default: ``$MLFLOW_TRACKING_URI``, as
    every job uses; never the URI stored in the file, which anyone able to write the file chose).

    Returns:
        True when the spool is empty afterwards.
    """
    spool_path = Path(spool_path)
    if not spool_path.exists():
        raise ValueError(f"{spool_path}: no such spool file")
    tracker = Tracker(uri=uri, spool_path=spool_path)
    if tracker._refused and not tracker._has_work():
        raise ValueError(f"{spool_path}: none of its {tracker._refused} line(s) is a record signed by this "
                         f"machine's spool key (fmcore.tracking.spool); nothing delivered")
    if tracker._spool_uri and tracker._spool_uri != redact_uri(tracker.uri):
        tracker._say(f"note: {spool_path} was written for {tracker._spool_uri}; delivering to "
                     f"{redact_uri(tracker.uri)} (this environment's tracking URI)")
    tracker._thread = threading.Thread(target=tracker._work, daemon=True)
    tracker._thread.start()
    tracker._stop.set()
    tracker._wake.set()
    tracker._thread.join(timeout)
    if tracker._has_work():
        tracker._write_spool()
        return False
    return True
