"""python -m fmcore.train end to end: SIGTERM + resume is bitwise, DDP (2 gloo ranks) equals one
process, MLflow contents, tracking outage, refusals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fmcore.data import dataset_hash
from fmcore.train import PREEMPTED_EXIT_CODE, main
from fmcore.training.checkpoint import load_checkpoint

from train_util import tiny_job, tiny_params

CLI = [sys.executable, "-m", "fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard",
       "--method", "fm_ot"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(uri: str) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _assert_same_weights(a: dict, b: dict, exact: bool) -> None:
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            if exact:
                assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"
            else:
                torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_then_resume_is_bitwise_identical(tmp_path):
    tiny_job(tmp_path, "checkerboard", "fm_ot",
             {"train": {"checkerboard": {"steps": 600, "checkpoint_every": 50, "log_every": 10}}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    full = subprocess.run([*CLI, "--out", "full"], cwd=tmp_path, env=_env(uri), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]

    proc = subprocess.Popen([*CLI, "--out", "cut"], cwd=tmp_path, env=_env(uri), stderr=subprocess.PIPE,
                            text=True)
    marker = tmp_path / "cut" / "checkpoints" / "step_100.pt"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-2000:]
    assert "SIGTERM" in err
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert 100 <= cut["step"] < 600 and not (tmp_path / "cut" / "checkpoint.pt").exists()

    resumed = subprocess.run([*CLI, "--out", "cut"], cwd=tmp_path, env=_env(uri), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {cut['step']}/600" in resumed.stderr
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    _assert_same_weights(a, b, exact=True)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    info_a = json.loads((tmp_path / "full" / "train.json").read_text())
    info_b = json.loads((tmp_path / "cut" / "train.json").read_text())
    assert info_a["final_loss"] == info_b["final_loss"] and info_b["steps"] == 600

    # MLflow: the resumed job continued the same run; every step logged exactly once.
    client = _client(uri)
    assert cut["mlflow_run_id"] == info_b["mlflow_run_id"] == b["mlflow_run_id"]
    steps = [m.step for m in client.get_metric_history(info_b["mlflow_run_id"], "loss")]
    # one point (the window's mean loss) per log_every window, the stop cutting one window short
    assert sorted(steps) == sorted(set(range(10, 601, 10)) | {cut["step"]})
    # The uninterrupted run's contents: flattened params, tags, metrics.
    run = client.get_run(info_a["mlflow_run_id"])
    assert run.info.run_name == "train/checkerboard/fm_ot" and run.info.status == "FINISHED"
    p = run.data.params
    assert p["train.lr"] == "0.003" and p["path.kind"] == "cond_ot" and p["model.hidden_dim"] == "64"
    assert p["train.adam.betas"] == "[0.9, 0.999]" and p["train.steps"] == "600"
    t = run.data.tags
    assert t["fmrepro.stage"] == "train" and t["fmrepro.dataset"] == "checkerboard"
    assert t["fmrepro.method"] == "fm_ot" and len(t["fmrepro.git_commit"]) in (40, 7)
    assert t["fmrepro.data_hash"] == dataset_hash(tmp_path / "data/prepared/checkerboard")
    assert Path(t["fmrepro.checkpoint"]).name == "checkpoint.pt"
    assert set(run.data.metrics) == {"loss", "lr", "samples_per_s"}
    assert run.data.metrics["lr"] == pytest.approx(1e-8)  # decayed back to lr_min at the last step


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ddp_two_gloo_ranks_equal_one_process(tmp_path):
    tiny_job(tmp_path, "checkerboard", "ot_cfm",
             {"train": {"checkerboard": {"steps": 20, "batch_size": 64, "micro_batches": 2,
                                         "checkpoint_every": 10}}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cli = [*CLI[:-1], "ot_cfm"]
    one = subprocess.run([*cli, "--out", "one"], cwd=tmp_path, env=_env(uri), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    two = subprocess.run([*launcher, *cli[1:], "--out", "two"], cwd=tmp_path, env=_env(uri),
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    _assert_same_weights(a, b, exact=False)
    # ... and the runs really differ from an untrained model (the comparison is not vacuous)
    assert any(not torch.equal(a["model"][k], a["ema"][k]) for k in a["model"])
    run = _client(uri).get_run(json.loads((tmp_path / "two" / "train.json").read_text())["mlflow_run_id"])
    assert run.data.tags["fmrepro.world_size"] == "2"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_unreachable_tracking_server_training_finishes_and_spool_flushes(tmp_path):
    tiny_job(tmp_path, "checkerboard", "fm_ot", {"train": {"checkerboard": {"steps": 30}}})
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    res = subprocess.run([*CLI, "--out", "run"], cwd=tmp_path, env=_env(down), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count("unavailable") == 1, res.stderr
    info = json.loads((tmp_path / "run" / "train.json").read_text())
    assert info["mlflow_pending"] is True and info["mlflow_run_id"] is None and info["steps"] == 30
    spool = tmp_path / "run" / "mlflow_spool.jsonl"
    assert spool.exists()
    uri = f"sqlite:///{tmp_path / 'back.db'}"  # the server is back (a store that answers)
    fl = subprocess.run([sys.executable, "-m", "fmcore.tracking", "flush", str(spool), "--uri", uri],
                        capture_output=True, text=True)
    assert fl.returncode == 0, fl.stderr[-2000:]
    assert not spool.exists()
    client = _client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    windows = [s for s in range(1, 31) if s % 25 == 0 or s % 20 == 0 or s == 30]  # log_every, checkpoint_every, end
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == windows
    assert run.info.status == "FINISHED" and run.data.params["train.steps"] == "30"


def test_cli_refuses_bad_inputs(tmp_path, monkeypatch, capsys):
    job = tiny_job(tmp_path, "checkerboard", "fm_ot")
    monkeypatch.chdir(tmp_path)
    assert main(["--params", "params.yaml", "--dataset", "checkerboard", "--method", "nope"]) == 2
    assert "no job 'checkerboard-nope'" in capsys.readouterr().err
    assert main(["--params", "missing.yaml", "--dataset", "checkerboard", "--method", "fm_ot"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    # A last.pt written by another method is refused, and left untouched.
    from fmcore.training.checkpoint import FORMAT, save_checkpoint

    run_dir = Path(job["paths"]["run_dir"])
    save_checkpoint({"format": FORMAT, "experiment": "smoke", "dataset": "checkerboard", "method": "ddpm",
                     "model_config": job["model"], "path_config": {}, "train_config": {}, "model": {},
                     "ema": {}, "step": 3}, run_dir / "last.pt")
    before = (run_dir / "last.pt").read_bytes()
    assert main(["--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "checkpoint method is \"ddpm\", expected \"fm_ot\"" in err
    assert (run_dir / "last.pt").read_bytes() == before
    shutil.rmtree(run_dir)


def test_changed_settings_after_a_finished_run_start_afresh(tmp_path, monkeypatch, capsys):
    """A finished run's last.pt does not block a re-run with new settings (Snakemake re-runs a job
    whose params changed); an unfinished one with other settings is still refused."""
    tiny_job(tmp_path, "checkerboard", "fm_ot", {"train": {"checkerboard": {"steps": 20, "checkpoint_every": 10}},
                                                 "evaluate": {"checkerboard": {"during_training": {"every": 10}}}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    argv = ["--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot"]
    assert main(argv) == 0
    run_dir = tmp_path / "results" / "smoke" / "checkerboard" / "fm_ot"
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt")) == ["step_10.pt", "step_20.pt"]
    # New lr and snapshot period. While the finished checkpoint.pt is there, retraining would replace
    # finished work (whose evaluation may exist): refused without --force, nothing touched.
    tiny_params(tmp_path, {"train": {"checkerboard": {"steps": 20, "checkpoint_every": 20, "lr": 1.0e-3}}})
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*.pt")}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt: a finished run" in err and "lr: 0.003 -> 0.001" in err and "--force" in err, err
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*.pt")} == before
    # Snakemake and DVC delete the declared output checkpoint.pt before re-running a changed job: the
    # finished state is then not resumed, old step files are gone.
    (run_dir / "checkpoint.pt").unlink()
    assert main(argv) == 0
    assert "starting afresh" in capsys.readouterr().err
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt")) == ["step_20.pt"]
    assert json.loads((run_dir / "train.json").read_text())["steps"] == 20
    # An unfinished last.pt (step 10 of 20) written with other settings is refused and kept.
    from fmcore.training.checkpoint import save_checkpoint

    state = load_checkpoint(run_dir / "checkpoints" / "step_20.pt")
    state["step"] = 10
    save_checkpoint(state, run_dir / "last.pt")
    before = (run_dir / "last.pt").read_bytes()
    tiny_params(tmp_path, {"train": {"checkerboard": {"steps": 20, "checkpoint_every": 20, "lr": 2.0e-3}}})
    assert main(argv) == 2
    assert "written with other train settings" in capsys.readouterr().err
    assert (run_dir / "last.pt").read_bytes() == before
