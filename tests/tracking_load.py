"""Writers for the tracking server's load and fault test (tests/test_tracking_server.py).

Each writer is its own process using fmcore's :class:`~fmcore.tracking.Tracker` exactly as a
training job does: start a run with params and tags, log a training-shaped metric stream,
set tags, log a small artifact, close. The values are a pure function of (writer, step), so
the test can recompute every point and compare it with what the server holds.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from fmcore.tracking import start_run

KEYS = ("train/loss", "train/lr", "train/samples_per_s")


def values(writer: int, step: int) -> dict[str, float]:
    """The metric points writer ``writer`` logs at ``step`` (exact binary floats, no rounding)."""
    return {"train/loss": 1.0 / (1.0 + step) + writer / 1024.0,
            "train/lr": 1.0e-3 * (1.0 - step / 4096.0),
            "train/samples_per_s": float(1000 + 7 * writer + step % 13)}


def run_name(tag: str, writer: int) -> str:
    return f"load/{tag}/w{writer:02d}"


def _writer(experiment: str, tag: str, writer: int, steps: int, step_s: float, folder: str) -> None:
    """One training-shaped stream; writes ``w<NN>.json`` with its timings and outcome."""
    folder_p = Path(folder)
    spool = folder_p / f"w{writer:02d}.spool.jsonl"
    artifact = folder_p / f"w{writer:02d}.txt"
    artifact.write_text(f"writer {writer}\n")
    t0 = time.perf_counter()
    stall, stall_at = 0.0, ""

    def timed(fn, *args, **kwargs) -> None:
        nonlocal stall, stall_at
        t = time.perf_counter()
        fn(*args, **kwargs)
        if time.perf_counter() - t > stall:
            stall, stall_at = time.perf_counter() - t, f"{fn.__name__} at {t - t0:.1f} s"

    tracker = start_run(experiment, run_name(tag, writer), tags={"fmrepro.stage": "load"},
                        params={"train": {"lr": 1.0e-3, "batch_size": 64}, "writer": writer},
                        spool_path=spool)
    for step in range(1, steps + 1):
        time.sleep(step_s)  # the training step
        timed(tracker.log_metrics, values(writer, step), step)
        if step % 100 == 0:
            timed(tracker.set_tags, {"fmrepro.progress": step})
    timed(tracker.log_artifact, artifact)
    logged = time.perf_counter()
    ok = tracker.close(timeout=300)
    done = time.perf_counter()
    result = {"writer": writer, "run_id": tracker.run_id, "closed_ok": ok, "spool_left": spool.exists(),
              "stall_s": stall, "stall_at": stall_at, "log_s": logged - t0, "drain_s": done - logged,
              "end": time.time()}
    (folder_p / f"w{writer:02d}.json").write_text(json.dumps(result))


def start_writers(experiment: str, tag: str, n: int, steps: int, step_s: float, folder: Path) -> list:
    """Start ``n`` writer processes (forked: mlflow is imported once, by the parent)."""
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(experiment, tag, i, steps, step_s, str(folder)), daemon=False)
             for i in range(n)]
    for p in procs:
        p.start()
    return procs


def results(folder: Path, n: int) -> list[dict]:
    """The writers' result files (a missing one means that writer crashed)."""
    return [json.loads((folder / f"w{i:02d}.json").read_text()) for i in range(n)
            if (folder / f"w{i:02d}.json").exists()]


def check_points(client, experiment_id: str, tag: str, n: int, steps: int) -> dict:
    """Compare the server's metric histories with the recomputed stream; count what is wrong."""
    lost = dup = wrong = 0
    runs = client.search_runs([experiment_id], f"tags.`mlflow.runName` LIKE 'load/{tag}/%'", max_results=1000)
    by_name: dict[str, list] = {}
    for r in runs:
        by_name.setdefault(r.info.run_name, []).append(r)
    extra_runs = sum(len(v) - 1 for v in by_name.values())
    for w in range(n):
        found = by_name.get(run_name(tag, w), [])
        if not found:
            lost += steps * len(KEYS)
            continue
        run = found[0]
        for key in KEYS:
            hist = client.get_metric_history(run.info.run_id, key)
            got: dict[int, list[float]] = {}
            for m in hist:
                got.setdefault(m.step, []).append(m.value)
            for step in range(1, steps + 1):
                vals = got.pop(step, [])
                lost += not vals
                dup += max(0, len(vals) - 1)
                wrong += bool(vals) and vals[0] != values(w, step)[key]
            wrong += sum(len(v) for v in got.values())  # steps never logged
    return {"runs": len(runs), "extra_runs": extra_runs, "lost": lost, "duplicated": dup, "wrong": wrong,
            "status": sorted({r.info.status for r in runs}), "pid": os.getpid()}
