"""fmcore.tracking: params flattening/masking, run contents read back, spool on outage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmcore.tracking import NullTracker, flatten_params, flush_spool, mask_secrets, start_run


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _uri(tmp_path: Path, name: str = "mlflow.db") -> str:
    return f"sqlite:///{tmp_path / name}"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An initialised, empty SQLite store (schema creation costs seconds; do it once)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    _client(f"sqlite:///{db}").search_experiments()
    return db


def _fresh_uri(empty_store: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, folder / "mlflow.db")
    return _uri(folder)


def test_flatten_params_dotted_keys():
    flat = flatten_params({"train": {"lr": 1e-3, "adam": {"betas": [0.9, 0.999]}}, "experiment": "smoke"})
    assert flat == {"train.lr": "0.001", "train.adam.betas": "[0.9, 0.999]", "experiment": "smoke"}


def test_mask_secrets_masks_only_secret_keys():
    flat = {"hub.api_key": "abc", "auth.PASSWORD": "x", "s3.secret": "y", "hf.token": "t",
            "train.lr": "0.1", "model.num_tokens": "4"}
    out = mask_secrets(flat)
    assert out["hub.api_key"] == out["auth.PASSWORD"] == out["s3.secret"] == out["hf.token"] == "***"
    assert out["train.lr"] == "0.1"
    assert "abc" not in out.values()


def test_run_contents_read_back(tmp_path, empty_store):
    uri = _fresh_uri(empty_store, tmp_path)
    tr = start_run("exp", "train/d/m", tags={"fmrepro.stage": "train"},
                   params={"train": {"lr": 0.5}, "hub": {"token": "hunter2"}}, uri=uri,
                   spool_path=tmp_path / "run" / "spool.jsonl")
    for step in range(5):
        tr.log_metrics({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    tr.set_tags({"fmrepro.checkpoint": "x/checkpoint.pt"})
    npz = tr.log_npz("sweep.npz", nfe=np.arange(3))
    assert tr.close()
    run = _client(uri).get_run(tr.run_id)
    assert run.info.run_name == "train/d/m" and run.info.status == "FINISHED"
    assert run.data.params == {"train.lr": "0.5", "hub.token": "***"}
    assert run.data.tags["fmrepro.stage"] == "train"
    assert run.data.tags["fmrepro.checkpoint"] == "x/checkpoint.pt"
    hist = _client(uri).get_metric_history(tr.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(s, 1.0 / (s + 1)) for s in range(5)]
    arts = [a.path for a in _client(uri).list_artifacts(tr.run_id)]
    assert arts == ["sweep.npz"] and npz.exists()
    assert not (tmp_path / "run" / "spool.jsonl").exists()
    # Artifacts land in mlartifacts/ beside the SQLite file.
    assert (tmp_path / "mlartifacts").is_dir()

    # A child (evaluation) run linked to the training run; a resumed run continues the same id.
    child = start_run("exp", "eval/d/m", parent_run_id=tr.run_id, uri=uri)
    child.log_metrics({"nfe": 10}, step=0)
    assert child.close()
    assert _client(uri).get_run(child.run_id).data.tags["mlflow.parentRunId"] == tr.run_id
    again = start_run("exp", "train/d/m", run_id=tr.run_id, uri=uri)
    again.log_metrics({"loss": 0.01}, step=5)
    assert again.close() and again.run_id == tr.run_id
    assert len(_client(uri).get_metric_history(tr.run_id, "loss")) == 6


def test_unreachable_store_spools_then_flushes(tmp_path, capsys, empty_store, monkeypatch):
    missing = tmp_path / "not_yet"
    missing.write_text("a file where the store's directory should be: the store is unavailable")
    uri = _uri(missing)
    spool = tmp_path / "run" / "spool.jsonl"
    tr = start_run("exp", "train/d/m", params={"a": 1}, uri=uri, spool_path=spool)
    tr._retry_s = tr._max_retry_s = 0.05
    for step in range(3):
        tr.log_metrics({"loss": float(step)}, step=step)
    assert not tr.flush(timeout=1.0)
    assert tr.close(timeout=5.0) is False
    err = capsys.readouterr().err
    assert err.count("unavailable") == 1, err  # said once
    lines = [json.loads(s) for s in spool.read_text().splitlines()]
    assert [r["op"] for r in lines] == ["state", "start", "metrics", "metrics", "metrics", "end"]

    missing.unlink()
    _fresh_uri(empty_store, missing)  # the store comes back
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # flush delivers where this environment's jobs do
    assert flush_spool(spool)
    assert not spool.exists()
    client = _client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.data.params == {"a": "1"} and run.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.0, 1.0, 2.0]


def test_store_recovers_while_running(tmp_path, empty_store):
    missing = tmp_path / "later"
    missing.write_text("blocks the store")
    uri = _uri(missing)
    tr = start_run("exp", "r", uri=uri, spool_path=tmp_path / "spool.jsonl")
    tr._retry_s = tr._max_retry_s = 0.05
    tr._quiet = True
    tr.log_metrics({"loss": 1.0}, step=0)
    assert not tr.flush(timeout=0.5)
    missing.unlink()
    _fresh_uri(empty_store, missing)
    tr.log_metrics({"loss": 2.0}, step=1)
    assert tr.close(timeout=30.0)
    assert [m.value for m in _client(uri).get_metric_history(tr.run_id, "loss")] == [1.0, 2.0]


def test_bad_spool_is_refused(tmp_path):
    bad = tmp_path / "spool.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="spool.jsonl: none of its 1 line"):
        flush_spool(bad)
    assert (tmp_path / "spool.jsonl.rejected").read_text() == "{not json\n"  # kept for a look
    with pytest.raises(ValueError, match="no such spool"):
        flush_spool(tmp_path / "missing.jsonl")


def test_null_tracker_is_silent():
    tr = NullTracker().start("e", "r")
    tr.log_metrics({"loss": 1.0}, step=0)
    assert tr.close() and tr.run_id is None


_WRITER = """
import sys
from fmcore.tracking import start_run
tr = start_run("exp", sys.argv[2], uri=sys.argv[1], params={"i": sys.argv[2]})
for s in range(200):
    tr.log_metrics({"loss": float(s)}, step=s)
    if s % 50 == 0:
        tr.flush()
sys.exit(0 if tr.close() else 1)
"""


@pytest.mark.slow
def test_two_jobs_share_one_sqlite_store(tmp_path):
    uri = _uri(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, uri, f"job{i}"]) for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["job0", "job1"]
    for r in runs:
        assert len(client.get_metric_history(r.info.run_id, "loss")) == 200


def test_fmcore_processes_opt_out_of_mlflow_telemetry():
    """No network calls but to the user's own store: MLflow's usage telemetry is off."""
    import os

    code = ("import fmcore.tracking, mlflow.telemetry.utils as u, os; "
            "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], u.is_telemetry_disabled())")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "CI")
           and not k.startswith("PYTEST")}  # MLflow also skips telemetry under CI / pytest
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["true", "True"]


def test_redact_uri_masks_passwords_and_token_queries():
    from fmcore.tracking.base import redact_uri, scrub

    assert redact_uri("http://alice:pw@host:5000/x") == "http://alice:***@host:5000/x"
    assert redact_uri("postgresql://u:pw@localhost/db") == "postgresql://u:***@localhost/db"
    assert redact_uri("https://host/?token=abc&x=1") == "https://host/?token=***&x=1"
    for unchanged in ("sqlite:///mlflow.db", "http://127.0.0.1:5000", "not a uri"):
        assert redact_uri(unchanged) == unchanged
    assert scrub("failed: http://alice:pw@h:1 said pw", "http://alice:pw@h:1") == "failed: http://alice:***@h:1 said ***"


def test_spool_lines_are_signed_for_their_directory(tmp_path, monkeypatch):
    """A line copied from another run directory's spool, or edited, does not verify; 0600 files."""
    import stat

    from fmcore.tracking.spool import Spool

    monkeypatch.setenv("FMREPRO_SPOOL_KEY_FILE", str(tmp_path / "key" / "spool.key"))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    art = a / "x.npz"
    art.write_bytes(b"x")
    Spool(a / "s.jsonl").rewrite("run1", "sqlite:///m.db", [{"op": "artifact", "path": str(art)},
                                                            {"op": "metrics", "step": 1, "ts": 0, "values": {"l": 1.0}}])
    assert stat.S_IMODE((a / "s.jsonl").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "key" / "spool.key").stat().st_mode) == 0o600
    got = Spool(a / "s.jsonl").load()
    assert got.run_id == "run1" and [r["op"] for r in got.records] == ["artifact", "metrics"] and not got.refused
    (b / "s.jsonl").write_text((a / "s.jsonl").read_text())  # copied into another run directory
    assert len(Spool(b / "s.jsonl").load().refused) == 3
    lines = (a / "s.jsonl").read_text().replace('"l": 1.0', '"l": 2.0')  # edited value
    (a / "s.jsonl").write_text(lines)
    got = Spool(a / "s.jsonl").load()
    assert [r["op"] for r in got.records] == ["artifact"] and got.refused == ["line 3: no valid signature"]
    assert (a / "s.jsonl.rejected").read_text() == lines
