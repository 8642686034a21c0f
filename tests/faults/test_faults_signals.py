"""SIGTERM / SIGUSR1 / SIGKILL at seeded random points of training, evaluation and report.

After each interruption the stage is simply started again (what Snakemake ``--retries`` or a
SLURM requeue does). Checked: every file present after a kill loads or parses (no truncated
checkpoint, npz, JSON, CSV, PNG, PDF, Markdown under a real name), and the final outputs equal
those of the uninterrupted run (training: model, EMA and optimizer tensors bit for bit, plus
every step's loss in MLflow; evaluation: metrics.json; report: the Table 1 files).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from faults_util import (check_files, compare_checkpoints, copy_tree, kill_group, loss_windows, popen, record,
                         wait_for)

RUN = Path("results/smoke/checkerboard/fm_ot")
TRAIN = ("fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot")
EVAL = ("fmcore.evaluate", "run", "--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot")
REPORT = ("fmcore.report", "--params", "params.yaml")
START_TIMEOUT = 300


def _interrupt(work: Path, argv: tuple[str, ...], sig: signal.Signals, trigger, delay: float) -> dict:
    """Start a stage, wait for ``trigger()`` (a file condition), sleep ``delay`` s, send ``sig``.

    Returns what happened: whether the signal hit a live process and the exit status.
    """
    proc = popen(work, *argv, log=work / "cli.log")
    fired = wait_for(trigger, START_TIMEOUT, proc=proc, poll=0.002)
    if fired and delay:
        time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(sig)
    try:
        code = proc.wait(timeout=180)
    except Exception:
        kill_group(proc)
        raise
    return {"hit": alive, "exit": code, "trigger_fired": fired}


def _finish(work: Path, argv: tuple[str, ...]) -> int:
    proc = popen(work, *argv, log=work / "cli.log")
    try:
        return proc.wait(timeout=600)
    finally:
        kill_group(proc)


def _mlflow_losses(work: Path, run_id: str) -> dict[int, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    return {m.step: m.value for m in client.get_metric_history(run_id, "loss")}


def _any(folder: Path, pattern: str):
    return lambda: folder.is_dir() and any(folder.rglob(pattern))


# Training: per signal, the interruption points (trigger kind, extra delay range in seconds).
TRAIN_PLANS = {
    "SIGTERM": [("step_file", (0.0, 0.3))],
    "SIGUSR1": [("step_file", (0.0, 0.3))],
    "SIGKILL": [("startup", (0.2, 1.5)), ("writing", (0.0, 0.0)), ("step_file", (0.0, 0.3))],
}


@pytest.mark.slow
@pytest.mark.parametrize("signame", list(TRAIN_PLANS))
def test_training_interrupted_then_restarted_equals_uninterrupted(base_ws, fresh_ws, signame):
    sig = signal.Signals[signame]
    rng = random.Random(f"fmrepro-faults-train-{signame}")
    run_dir = fresh_ws / RUN
    events, broken_all, stray_all = [], [], []
    for kind, (lo, hi) in TRAIN_PLANS[signame]:
        delay = rng.uniform(lo, hi)
        if kind == "startup":
            trigger = lambda: True  # noqa: E731 - fire at once, the delay is from the launch
        elif kind == "writing":  # a checkpoint's temp file exists: kill in the middle of the write
            # (a tiny checkpoint is written in about a millisecond: if the poll misses every write,
            # the kill falls just after step_60.pt is linked)
            tmp, late = _any(run_dir, ".*.tmp"), _any(run_dir, "step_60.pt")
            trigger = lambda tmp=tmp, late=late: tmp() or late()  # noqa: E731
        else:
            step = rng.choice([30, 60])
            trigger = _any(run_dir, f"step_{step}.pt")
        ev = _interrupt(fresh_ws, TRAIN, sig, trigger, delay)
        ev.update(kind=kind, delay=round(delay, 3))
        if kind == "writing" and not ev["trigger_fired"]:
            ev["note"] = "temp file never seen; killed when the process was found"
        _, broken, stray = check_files(fresh_ws / "results")
        ev["temp_files_left"] = [t for t in stray if t not in stray_all]  # a kill hit a write
        broken_all += broken
        stray_all += stray
        events.append(ev)
    final = _finish(fresh_ws, TRAIN)
    base_run = base_ws / RUN
    diffs = ["no final checkpoint"]
    if final == 0:
        diffs = compare_checkpoints(base_run / "checkpoint.pt", run_dir / "checkpoint.pt")
        for step in (30, 60, 90):
            name = f"checkpoints/step_{step}.pt"
            diffs += [f"step_{step}: {d}" for d in compare_checkpoints(base_run / name, run_dir / name)]
    losses_ok, missing = False, []
    if final == 0:
        base_json = json.loads((base_run / "train.json").read_text())
        got_json = json.loads((run_dir / "train.json").read_text())
        if base_json["final_loss"] != got_json["final_loss"]:
            diffs.append("train.json final_loss")
        want = _mlflow_losses(base_ws, base_json["mlflow_run_id"])
        got = _mlflow_losses(fresh_ws, got_json["mlflow_run_id"])
        # one mean loss per log window; a stop logs the window it cuts short (a "cut" step), so
        # only the windows without a cut must equal the uninterrupted run's
        missing = sorted(set(want) - set(got))
        cuts = set(got) - set(want)
        bounds = [0, *sorted(want)]
        split = {b for a, b in zip(bounds, bounds[1:]) if any(a < c < b for c in cuts)}
        losses_ok = not missing and sorted(want) == loss_windows(90) and \
            all(got[s] == want[s] for s in want if s not in split)
    hits = sum(ev["hit"] for ev in events)
    ok = final == 0 and not diffs and not broken_all and losses_ok
    preempt_codes = {75, -sig.value} if sig != signal.SIGKILL else {-9}
    wrong_codes = [ev["exit"] for ev in events if ev["hit"] and ev["exit"] not in preempt_codes | {0}]
    record("fault", f"train-{signame.lower()}", injected=hits, survived=hits if ok else 0,
           data_lost=len(broken_all) + len(diffs) + len(missing),
           detail=f"{signame} x{hits} during `fmcore.train` ({', '.join(ev['kind'] for ev in events)}), "
                  f"restart: checkpoint.pt + step_30/60/90 model/EMA/optimizer bitwise equal, "
                  f"every MLflow loss window present, equal where no stop cut it; stray temp files {len(stray_all)}",
           events=events, stray=stray_all)
    assert hits == len(events), events
    assert not wrong_codes, events
    assert final == 0
    assert not broken_all, broken_all
    assert not diffs, diffs[:20]
    assert losses_ok, f"missing loss steps {missing[:20]}"


@pytest.mark.slow
def test_evaluation_interrupted_then_restarted_equals_uninterrupted(evaluated_ws, tmp_path):
    work = copy_tree(evaluated_ws, tmp_path / "ws")
    shutil.rmtree(work / RUN / "eval")
    rng = random.Random("fmrepro-faults-evaluate")
    eval_dir = work / RUN / "eval"
    events, broken_all = [], []
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1):
        # Fire once some result of this invocation is being cached, then a random moment later.
        ev = _interrupt(work, EVAL, sig, _any(eval_dir, "*.npz"), rng.uniform(0.0, 1.5))
        ev["signal"] = sig.name
        _, broken, _ = check_files(eval_dir)
        broken_all += broken
        events.append(ev)
    final = _finish(work, EVAL)
    want = json.loads((evaluated_ws / RUN / "eval" / "metrics.json").read_text())
    got = json.loads((eval_dir / "metrics.json").read_text()) if final == 0 else {}
    diff = sorted(k for k in set(want.get("metrics", {})) | set(got.get("metrics", {}))
                  if want["metrics"].get(k) != got.get("metrics", {}).get(k))
    hits = sum(ev["hit"] for ev in events)
    ok = final == 0 and not diff and not broken_all
    record("fault", "evaluate-signals", injected=hits, survived=hits if ok else 0,
           data_lost=len(broken_all) + len(diff),
           detail="SIGKILL, SIGTERM, SIGUSR1 during `fmcore.evaluate run` (after its first npz, random "
                  "delay); every npz/JSON loads; rerun metrics.json equal to the uninterrupted one",
           events=events)
    assert final == 0
    assert not broken_all, broken_all
    assert not diff, [(k, want["metrics"].get(k), got.get("metrics", {}).get(k)) for k in diff]


@pytest.mark.slow
def test_report_interrupted_then_restarted_equals_uninterrupted(evaluated_ws, tmp_path):
    work = copy_tree(evaluated_ws, tmp_path / "ws")
    out = work / "reports" / "smoke"
    assert _finish(work, REPORT) == 0
    baseline = {p.name: p.read_bytes() for p in out.glob("table1*")}
    assert baseline
    rng = random.Random("fmrepro-faults-report")
    events, broken_all = [], []
    for i, sig in enumerate((signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)):
        if i == 0:
            shutil.rmtree(out)  # kill while the first files are being written
            trigger = _any(out, "*")
        else:  # kill while an existing report is being rewritten
            before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
            trigger = lambda before=before: any(  # noqa: E731
                p not in before or p.stat().st_mtime_ns != before[p] for p in out.iterdir())
        ev = _interrupt(work, REPORT, sig, trigger, rng.uniform(0.0, 1.0))
        ev["signal"] = sig.name
        _, broken, _ = check_files(out) if out.exists() else (0, [], [])
        broken_all += broken
        events.append(ev)
    final = _finish(work, REPORT)
    diff = [name for name, data in baseline.items()
            if not (out / name).is_file() or (out / name).read_bytes() != data]
    _, broken, _ = check_files(out)
    hits = sum(ev["hit"] for ev in events)
    ok = final == 0 and not diff and not broken_all and not broken
    record("fault", "report-signals", injected=hits, survived=hits if ok else 0,
           data_lost=len(broken_all) + len(diff),
           detail="SIGKILL, SIGTERM, SIGKILL during `fmcore.report` (while files are written); every "
                  "CSV/MD/TeX/PNG/PDF parses; rerun Table 1 files byte-identical",
           events=events)
    assert final == 0
    assert not broken_all + broken, broken_all + broken
    assert not diff, diff
