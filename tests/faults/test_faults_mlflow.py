"""The MLflow store under stress: a real tracking server killed and restarted mid-run, and two
Snakemake training jobs logging to one SQLite store at once. No metric may be lost."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from faults_util import PY, REPO, cli, env, free_port, kill_group, loss_windows, popen, record, wait_for

SNAKEMAKE = Path(PY).parent / "snakemake"
MLFLOW = Path(PY).parent / "mlflow"
METHODS = ("fm_ot", "fm_vp")
STEPS = 90


def _run_dir(work: Path, method: str) -> Path:
    return work / "results" / "smoke" / "checkerboard" / method


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "server.log", "a")  # noqa: SIM115 - owned by the child
    cmd = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{folder / 's.db'}", "--artifacts-destination",
           str(folder / "artifacts")]
    proc = subprocess.Popen(cmd, cwd=folder, env=env(folder), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    # Ready = answers an API call (not just /health): the first request initialises the store.
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                return r.status == 200
        except OSError:
            return False

    if not wait_for(up, 300, proc=proc, poll=0.5):
        kill_group(proc)
        raise AssertionError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
    return proc


def _losses(uri: str, run_id: str | None, run_name: str) -> tuple[dict[int, float], str]:
    """Loss history and status of a training run: by id, or (id unknown when the store was down at
    the end of training) the FINISHED run of that name with the most steps."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if run_id is None:
        exp = client.get_experiment_by_name("smoke")
        runs = client.search_runs([exp.experiment_id], f"tags.mlflow.runName = '{run_name}'")
        runs = [r for r in runs if r.info.status == "FINISHED"] or runs
        run_id = max(runs, key=lambda r: len(client.get_metric_history(r.info.run_id, "loss"))).info.run_id
    return ({m.step: m.value for m in client.get_metric_history(run_id, "loss")},
            client.get_run(run_id).info.status)


SERVER_STEPS = 1500  # long enough that the outage falls inside training


def _flush(work: Path, spool: Path, uri: str, tries: int = 3) -> bool:
    """The documented recovery for records still spooled at exit: `python -m fmcore.tracking flush`
    in the jobs' environment (the same MLFLOW_TRACKING_URI; the URI in the spool is not used)."""
    for _ in range(tries):
        if not spool.exists():
            return True
        out = cli(work, "fmcore.tracking", "flush", str(spool.relative_to(work)), MLFLOW_TRACKING_URI=uri)
        if out.returncode == 0:
            return True
        time.sleep(5)
    return not spool.exists()


@pytest.mark.slow
def test_tracking_server_killed_and_restarted_mid_run(fresh_ws):
    """Two trainings log to a real `mlflow server`; once metrics arrive it is SIGKILLed, and restarted a
    while later (same store, same port). Both runs finish, and every step's loss arrives."""
    port = free_port()
    folder = fresh_ws / "server"
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(folder, port)
    procs, during = {}, False
    try:
        procs = {m: popen(fresh_ws, "fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard",
                          "--method", m, "--steps", str(SERVER_STEPS), log=fresh_ws / f"train_{m}.log",
                          MLFLOW_TRACKING_URI=uri)
                 for m in METHODS}
        delivered = lambda: "log-batch" in (folder / "server.log").read_text()  # noqa: E731
        assert wait_for(delivered, 300, proc=procs[METHODS[0]], poll=0.05), "no metric reached the server"
        kill_group(server)  # the tracking server goes away mid-run
        server.wait(timeout=60)
        during = all(p.poll() is None for p in procs.values())
        killed_at = time.monotonic()
        time.sleep(5.0)
        server = _start_server(folder, port)  # ... and comes back
        outage = time.monotonic() - killed_at
        codes = {m: p.wait(timeout=600) for m, p in procs.items()}
    finally:
        for p in procs.values():
            kill_group(p)
    try:
        missing, statuses, spooled, no_id = {}, {}, {}, []
        for m in METHODS:
            meta = json.loads((_run_dir(fresh_ws, m) / "train.json").read_text())
            if meta["mlflow_run_id"] is None:
                no_id.append(m)
            spool = _run_dir(fresh_ws, m) / "mlflow_spool.jsonl"
            spooled[m] = spool.exists()
            assert _flush(fresh_ws, spool, uri), f"{spool} could not be delivered"
            got, statuses[m] = _losses(uri, meta["mlflow_run_id"], f"train/checkerboard/{m}")
            missing[m] = sorted(set(loss_windows(SERVER_STEPS)) - set(got))
    finally:
        kill_group(server)
    logs = {m: (fresh_ws / f"train_{m}.log").read_text() for m in METHODS}
    warned = all("unavailable" in text for text in logs.values())
    ok = all(c == 0 for c in codes.values()) and not any(missing.values()) and during and \
        all(s == "FINISHED" for s in statuses.values())
    record("fault", "mlflow-server-outage", injected=1, survived=1 if ok else 0,
           data_lost=sum(len(v) for v in missing.values()),
           detail=f"`mlflow server` (127.0.0.1) SIGKILLed during 2 concurrent {SERVER_STEPS}-step trainings, "
                  f"back after {outage:.0f} s; both exit 0, runs FINISHED, all {len(loss_windows(SERVER_STEPS))} "
                  "loss windows present "
                  f"per run (left in the spool at exit and flushed with `fmcore.tracking flush`: "
                  f"{sorted(k for k, v in spooled.items() if v) or 'none'}); outage reported in the log: "
                  f"{warned}; train.json without a run id (store down at exit): {no_id or 'none'}")
    assert during, "the trainings ended before the server was killed"
    assert codes == {m: 0 for m in METHODS}, {m: logs[m][-1500:] for m in METHODS}
    assert not any(missing.values()), {m: v[:20] for m, v in missing.items()}
    assert statuses == {m: "FINISHED" for m in METHODS}, statuses


@pytest.mark.slow
def test_two_snakemake_training_jobs_share_one_sqlite_store(fresh_ws):
    """`snakemake -c2` runs two training jobs at once into one fresh SQLite MLflow store."""
    targets = [f"results/smoke/checkerboard/{m}/train.json" for m in METHODS]
    touch = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(fresh_ws),
                            "--configfile",
                            "params.yaml", "--touch", "-c1", "data/prepared/checkerboard"], cwd=fresh_ws,
                           env=env(fresh_ws), capture_output=True, text=True, timeout=300)
    assert touch.returncode == 0, touch.stderr[-2000:]
    out = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(fresh_ws), "--configfile",
                          "params.yaml", "-c2", *targets], cwd=fresh_ws, env=env(fresh_ws),
                         capture_output=True, text=True, timeout=900)
    uri = f"sqlite:///{fresh_ws / 'mlflow.db'}"
    missing, statuses, pending = {}, {}, {}
    if out.returncode == 0:
        for m in METHODS:
            meta = json.loads((_run_dir(fresh_ws, m) / "train.json").read_text())
            pending[m] = meta["mlflow_pending"]
            got, statuses[m] = _losses(uri, meta["mlflow_run_id"], f"train/checkerboard/{m}")
            missing[m] = sorted(set(loss_windows(STEPS)) - set(got))
    ok = out.returncode == 0 and not any(missing.values()) and not any(pending.values()) and \
        all(s == "FINISHED" for s in statuses.values())
    record("fault", "mlflow-sqlite-concurrent", injected=1, survived=1 if ok else 0,
           data_lost=sum(len(v) for v in missing.values()),
           detail=f"`snakemake -c2` trains fm_ot and fm_vp at once into one new SQLite store; both runs "
                  f"FINISHED with all {STEPS} losses, nothing left pending")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not any(missing.values()), missing
    assert not any(pending.values()), pending
    assert statuses == {m: "FINISHED" for m in METHODS}, statuses
