"""The cluster tracking server (fmcore/tracking/server.py): PostgreSQL + ``mlflow server`` with
basic auth, under load and killed mid-stream (docs/faults.md, "Tracking server under load").

The server is started once by ``.ci/run`` (``python -m fmcore.tracking server --root ROOT
--auth --detach``) and found through ``FMREPRO_MLFLOW_SERVER=ROOT``; without it these tests
skip (the unit tests of the SLURM store check still run).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from fmcore.tracking import check_cluster_store, start_run
from fmcore.tracking.server import read_credentials, read_info, wait_ready
from tracking_load import KEYS, check_points, results, start_writers

ROOT = os.environ.get("FMREPRO_MLFLOW_SERVER")
REPO = Path(__file__).resolve().parents[1]
needs_server = pytest.mark.skipif(
    not ROOT, reason="needs FMREPRO_MLFLOW_SERVER=ROOT of a server started with "
    "'python -m fmcore.tracking server --root ROOT --auth --detach' (.ci/run)")
WRITERS, STEPS = 32, 300


# -- the SLURM executor refuses a file store (no server needed) ----------------------------
@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "file:///shared/mlruns", "mlruns"])
def test_slurm_refuses_file_store(uri, monkeypatch):
    monkeypatch.delenv("FMREPRO_ALLOW_SQLITE_ON_SLURM", raising=False)
    with pytest.raises(ValueError) as err:
        check_cluster_store(uri, "slurm")
    msg = str(err.value)
    assert "\n" not in msg and uri in msg and "python -m fmcore.tracking server" in msg
    check_cluster_store(uri, "local")  # the laptop default stays allowed
    check_cluster_store(uri, "slurm-jobstep")  # (the job itself: checked once, by the controller)
    check_cluster_store("http://login01:5000", "slurm")
    monkeypatch.setenv("FMREPRO_ALLOW_SQLITE_ON_SLURM", "1")
    check_cluster_store(uri, "slurm")


@pytest.mark.slow
def test_snakemake_slurm_executor_refuses_sqlite(tmp_path):
    """The workflow's onstart check: nothing is submitted (no cluster needed to see it)."""
    from workflow_util import SNAKEMAKE, tiny_smoke_params, write_yaml
    from workflow_util import env as wf_env

    write_yaml(tmp_path / "params" / "smoke.yaml", tiny_smoke_params())
    env = wf_env()
    env.pop("FMREPRO_ALLOW_SQLITE_ON_SLURM")
    out = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--executor", "slurm", "-j", "1",
                          "data/prepared/checkerboard"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    [line] = [ln for ln in text.splitlines() if "MLFLOW_TRACKING_URI=sqlite:///mlflow.db" in ln]
    assert line.startswith("fmrepro: ") and "python -m fmcore.tracking server" in line
    assert not (tmp_path / "data" / "prepared").exists() and "Submitted" not in text


# -- the running server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    info = read_info(ROOT)
    assert info.credentials, "the CI server runs with --auth"
    creds = read_credentials(info.credentials)
    assert oct(Path(info.credentials).stat().st_mode & 0o777) == "0o600"
    return info, creds


@pytest.fixture
def authed(server, monkeypatch):
    info, creds = server
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", info.url)
    from mlflow import MlflowClient

    return info, MlflowClient(tracking_uri=info.url)


def _post(url: str, body: dict, user: str | None = None, password: str | None = None) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@needs_server
def test_unauthenticated_write_refused(server):
    info, creds = server
    url = f"{info.url}/api/2.0/mlflow/experiments/create"
    name = f"auth-{uuid.uuid4().hex[:8]}"
    assert _post(url, {"name": name}) == 401
    assert _post(url, {"name": name}, creds["MLFLOW_TRACKING_USERNAME"], "wrong-password") == 401
    user, password = creds["MLFLOW_TRACKING_USERNAME"], creds["MLFLOW_TRACKING_PASSWORD"]
    assert _post(url, {"name": name}, user, password) == 200


@needs_server
def test_authenticated_job_metrics_arrive(authed, tmp_path):
    info, client = authed
    exp = f"auth-job-{uuid.uuid4().hex[:8]}"
    tracker = start_run(exp, "train/checkerboard/fm_ot", tags={"fmrepro.stage": "train"},
                        params={"train": {"lr": 0.001}}, spool_path=tmp_path / "spool.jsonl")
    for step in range(1, 51):
        tracker.log_metrics({"train/loss": 1.0 / step}, step)
    assert tracker.close(timeout=120)
    assert not (tmp_path / "spool.jsonl").exists()
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.lr"] == "0.001"
    hist = client.get_metric_history(tracker.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in hist) == [(s, 1.0 / s) for s in range(1, 51)]


def _report(name: str, res: list[dict], wall: float, check: dict, capsys) -> dict:
    points = WRITERS * STEPS * len(KEYS)
    summary = {"case": name, "writers": WRITERS, "steps": STEPS, "points": points,
               "points_per_s": round(points / wall, 1), "wall_s": round(wall, 1),
               "longest_stall_s": round(max(r["stall_s"] for r in res), 4),
               "stall_at": max(res, key=lambda r: r["stall_s"])["stall_at"],
               "log_s_max": round(max(r["log_s"] for r in res), 1),
               "longest_drain_s": round(max(r["drain_s"] for r in res), 1), **check}
    with capsys.disabled():
        print(f"\ntracking load [{name}]: " + json.dumps(summary))
    return summary


def _run_load(client, tmp_path, tag: str, step_s: float, during=None) -> tuple[list[dict], float, dict]:
    exp = f"load-{uuid.uuid4().hex[:8]}"
    client.create_experiment(exp)
    t0 = time.perf_counter()
    procs = start_writers(exp, tag, WRITERS, STEPS, step_s, tmp_path)
    if during is not None:
        during()
    for p in procs:
        p.join(600)
    wall = time.perf_counter() - t0
    crashed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    res = results(tmp_path, WRITERS)
    assert not crashed and len(res) == WRITERS, f"writers crashed: {crashed}"
    assert all(r["closed_ok"] and not r["spool_left"] for r in res), [r for r in res if r["spool_left"]]
    check = check_points(client, client.get_experiment_by_name(exp).experiment_id, tag, WRITERS, STEPS)
    assert check["runs"] == WRITERS and check["extra_runs"] == 0, check
    assert check["lost"] == check["duplicated"] == check["wrong"] == 0, check
    assert check["status"] == ["FINISHED"], check
    return res, wall, check


@needs_server
@pytest.mark.slow
def test_load_32_writers(authed, tmp_path, capsys):
    """32 concurrent Tracker processes, 300 steps x 3 metrics each: every point arrives once."""
    info, client = authed
    res, wall, check = _run_load(client, tmp_path, "steady", step_s=0.002)
    _report("steady", res, wall, check, capsys)


@needs_server
@pytest.mark.slow
def test_load_server_killed_mid_stream(authed, tmp_path, capsys):
    """The same load; the MLflow server is SIGKILLed 3 s in and restarted: nothing lost or doubled."""
    info, client = authed
    outage = {}

    def kill_and_restart() -> None:
        time.sleep(3.0)
        pid = read_info(ROOT).mlflow_pid
        os.killpg(pid, signal.SIGKILL)
        outage["killed"] = time.perf_counter()
        time.sleep(2.0)
        out = subprocess.run([sys.executable, "-m", "fmcore.tracking", "restart", "--root", ROOT],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert wait_ready(info.url, 60)
        outage["back"] = time.perf_counter()

    # 300 steps of 0.2 s: the stream outlasts the outage (a restart takes ~30 s on 2 busy cores)
    res, wall, check = _run_load(client, tmp_path, "killed", step_s=0.2, during=kill_and_restart)
    summary = _report("server killed", res, wall, check, capsys)
    summary["outage_s"] = round(outage["back"] - outage["killed"], 1)
    with capsys.disabled():
        print(f"tracking load [server killed]: outage {summary['outage_s']} s")


def _table1(work: Path, exp: str) -> dict[tuple[str, str], dict[str, str]]:
    """Table 1 rows by (dataset, method), without the columns that name runs or times."""
    with open(work / "reports" / exp / "table1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    drop = {k for k in rows[0] if "run_id" in k or k.endswith(("_at", "time", "seconds", "host"))}
    return {(r["dataset"], r["method"]): {k: v for k, v in r.items() if k not in drop} for r in rows}


@needs_server
@pytest.mark.slow
def test_smoke_workflow_same_table_on_server(server, tmp_path):
    """The smoke workflow (shrunk: two checkerboard jobs) gives the same Table 1 with the default
    SQLite store and with MLFLOW_TRACKING_URI pointing at the server."""
    from workflow_util import SNAKEMAKE, tiny_smoke_params, write_yaml
    from workflow_util import env as wf_env

    info, creds = server
    exp = f"smoke_{uuid.uuid4().hex[:6]}"
    params = tiny_smoke_params()
    params["experiment"] = exp
    params["datasets"] = {"checkerboard": params["datasets"]["checkerboard"]}  # 2 jobs: a few minutes
    params["jobs"] = {k: params["jobs"][k] for k in ("checkerboard-fm_ot", "checkerboard-ddpm")}
    tables = {}
    for store in ("sqlite", "server"):
        work = tmp_path / store
        write_yaml(work / "params" / "smoke.yaml", params)
        env = wf_env()
        if store == "server":
            env.update(creds, MLFLOW_TRACKING_URI=info.url)
        out = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "2"], cwd=work,
                             env=env,
                             capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
        tables[store] = _table1(work, exp)
    assert (tmp_path / "sqlite" / "mlflow.db").exists() and not (tmp_path / "server" / "mlflow.db").exists()
    assert len(tables["server"]) == len(params["jobs"])
    assert tables["server"] == tables["sqlite"]


# -- server pieces that need no running server ----------------------------------------------
def test_credentials_generated_0600_and_env_wins(tmp_path, monkeypatch):
    from fmcore.tracking.server import _auth_config, _credentials

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    path, creds = _credentials(tmp_path, None)
    assert path == tmp_path / "auth" / "credentials" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(creds["MLFLOW_TRACKING_PASSWORD"]) >= 24 and read_credentials(path) == creds
    assert _credentials(tmp_path, None)[1] == creds  # reused, not regenerated
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "from-env")
    other = tmp_path / "elsewhere" / "creds"
    assert _credentials(tmp_path, other)[1]["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert oct(other.stat().st_mode & 0o777) == "0o600"
    ini = _auth_config(tmp_path, "postgresql://u@/mlflow?host=/s")
    assert "database_uri = postgresql://u@/mlflow_auth?host=/s" in ini.read_text()
    assert oct(ini.stat().st_mode & 0o777) == "0o600" and "from-env" not in ini.read_text()


def test_missing_postgres_is_one_line(tmp_path, monkeypatch, capsys):
    from fmcore.tracking import __main__ as cli

    monkeypatch.setenv("FMREPRO_PG_BIN", str(tmp_path / "no-such-bin"))
    rc = cli.main(["server", "--root", str(tmp_path / "root"), "--port", "1", "--detach"])
    expected = f"error: FMREPRO_PG_BIN={tmp_path / 'no-such-bin'}: no initdb there"
    assert rc == 2 and capsys.readouterr().err.strip() == expected


def test_no_server_recorded_is_one_line(tmp_path, capsys):
    from fmcore.tracking import __main__ as cli

    assert cli.main(["stop", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "server.json") in err
