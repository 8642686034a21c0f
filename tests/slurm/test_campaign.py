"""A training campaign through a real 2-node SLURM cluster and `snakemake --profile slurm`.

Needs the cluster of tests/slurm/start_cluster.sh (nodes n1 and n2 on this machine; .ci/run
starts it) and FMREPRO_SLURM=1; skipped otherwise. One 2-rank DDP training (gloo, one rank
per node, launched by `srun`) is
- requeued from outside mid-run (`scontrol requeue`, as an admin or a preemption would),
- warned by SLURM before its time limit (`--signal=USR1@<lead>`) and requeues itself,
- duplicated by a Snakemake controller that is killed and restarted mid-run,
and must end with weights bitwise equal to an uninterrupted 2-rank run, without Snakemake
spending a retry (the SLURM job id never changes).
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from workflow_util import ROOT, SMOKE_PARAMS, SNAKEMAKE, env, load_yaml, write_yaml

from fmcore.data import prepare
from fmcore.training.checkpoint import load_checkpoint

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FMREPRO_SLURM") != "1", reason="needs FMREPRO_SLURM=1 and a SLURM cluster"),
]

RUN = "results/campaign/checkerboard/fm_ot"
ATTEMPTS = "logs/campaign/train/checkerboard/fm_ot.attempts"
RUNTIME_MIN, LEAD_S = 2, 60  # SLURM's time-limit warning comes 60-90 s into each incarnation
AFTER_REQUEUE_S = 130  # training left after the admin's requeue: longer than an incarnation before its warning
CALIBRATION_STEPS = 2000


def _params(steps: int, runtime: int = RUNTIME_MIN) -> dict:
    p = load_yaml(SMOKE_PARAMS)
    p["experiment"] = "campaign"
    p["datasets"] = {"checkerboard": {**p["datasets"]["checkerboard"], "n_train": 20000, "n_test": 500}}
    for section in ("models", "train", "evaluate"):
        p[section] = {"checkerboard": p[section]["checkerboard"]}
    p["train"]["checkerboard"].update(steps=steps, batch_size=256, checkpoint_every=250, log_every=100,
                                      micro_batches=2, num_threads=1)
    p["evaluate"]["checkerboard"]["during_training"]["every"] = 2000
    p["resources"] = {"checkerboard": {
        "nodes": 2, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_mb": 1500,
        "runtime": runtime, "signal_lead_s": LEAD_S, "partition": "", "launcher": "srun",
        "prepare": {"nodes": 1, "launcher": "", "runtime": 10}}}
    p["jobs"] = {"checkerboard-fm_ot": {"dataset": "checkerboard", "method": "fm_ot"}}
    return p


def _train_2_ranks(work: Path, steps: int) -> dict:
    """An uninterrupted 2-rank training (torchrun, gloo) in ``work``; its train.json."""
    params = _params(steps)
    write_yaml(work / "params.yaml", params)
    prepare("checkerboard", copy.deepcopy(params["datasets"]["checkerboard"]), work / "data/prepared/checkerboard")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
           sys.executable, "-m", "fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard",
           "--method", "fm_ot"]
    out = subprocess.run(cmd, cwd=work, env=env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((work / RUN / "train.json").read_text())


@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> int:
    """Training steps sized to this machine's speed (measured), so the time-limit warning always falls
    inside training: a fixed count finished before the warning on a faster CI machine."""
    measured = _train_2_ranks(tmp_path_factory.mktemp("calibrate"), CALIBRATION_STEPS)
    per_s = measured["steps"] / measured["train_seconds"]
    wanted = 1500 + per_s * AFTER_REQUEUE_S  # the admin requeues at step >= 1000, polled every second
    return max(16000, -(-int(wanted) // 500) * 500)  # a multiple of checkpoint_every and log_every


@pytest.fixture(scope="module")
def reference(tmp_path_factory, steps) -> dict:
    """The uninterrupted 2-rank run the campaign must reproduce bitwise."""
    work = tmp_path_factory.mktemp("reference")
    _train_2_ranks(work, steps)
    return load_checkpoint(work / RUN / "checkpoint.pt")


def _workdir(tmp_path: Path, steps: int, runtime: int = RUNTIME_MIN) -> Path:
    params = _params(steps, runtime)
    write_yaml(tmp_path / "params.yaml", params)
    prepare("checkerboard", copy.deepcopy(params["datasets"]["checkerboard"]),
            tmp_path / "data/prepared/checkerboard")
    (tmp_path / "slurm").symlink_to(ROOT / "slurm")  # as in the repository root
    return tmp_path


def _controller(work: Path) -> subprocess.Popen:
    """`snakemake --profile slurm` for the training target, in its own process group."""
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), f"{RUN}/train.json", "--profile", "slurm",
           "--configfile", "params.yaml", "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
    return subprocess.Popen(cmd, cwd=work, env=env(), stdout=open(work / "controller.log", "a"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _train_jobs() -> list[dict]:
    """The training jobs SLURM lists now: id, state, reason."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T|%r"], capture_output=True, text=True, timeout=30)
    rows = [dict(zip(("id", "comment", "state", "reason"), line.split("|"))) for line in out.stdout.splitlines()]
    return [r for r in rows if "train" in r["comment"]]


def _release_held(jobs: list[dict]) -> None:
    """A requeued job waits ~120 s (BeginTime) before it may start again; skip the wait."""
    for job in jobs:
        if job["state"] == "PENDING" and job["reason"] == "BeginTime":
            subprocess.run(["scontrol", "update", f"jobid={job['id']}", "StartTime=now"], capture_output=True,
                           timeout=30)


def _drive(ctl: subprocess.Popen, work: Path, on_poll=lambda jobs: None) -> tuple[str, list[str]]:
    """Wait for the controller to finish (releasing requeue holds); its log and the SLURM ids it submitted."""
    deadline = time.monotonic() + 900
    try:
        while ctl.poll() is None and time.monotonic() < deadline:
            jobs = _train_jobs()
            _release_held(jobs)
            on_poll(jobs)
            time.sleep(1)
    finally:
        if ctl.poll() is None:
            os.killpg(ctl.pid, signal.SIGKILL)
    log = (work / "controller.log").read_text()
    assert ctl.wait() == 0, log[-4000:]
    return log, re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)


def _step(work: Path) -> int:
    try:
        return int(load_checkpoint(work / RUN / "last.pt")["step"])
    except (ValueError, OSError):
        return 0


def _attempts(work: Path) -> list[dict]:
    lines = (work / ATTEMPTS / "attempts.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:]]


def _tsv(work: Path) -> str:
    """attempts.tsv in full, for a failure message (pytest would cut the rows' repr short)."""
    return "\n" + (work / ATTEMPTS / "attempts.tsv").read_text()


def _scontrol(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout))


def _same_weights(got: dict, want: dict, steps: int) -> None:
    for part in ("model", "ema"):
        for k, v in want[part].items():
            assert torch.equal(got[part][k], v), f"{part}.{k} differs from the uninterrupted run"
    assert got["step"] == want["step"] == steps and got["loss_tail"] == want["loss_tail"]


@pytest.mark.timeout(1200)
def test_requeue_and_time_limit_resume_bitwise_without_spending_a_retry(tmp_path, steps, reference):
    work = _workdir(tmp_path, steps)
    requeued_by_admin = []

    def requeue_once(jobs: list[dict]) -> None:  # (a): from outside, as an admin or a preemption would
        running = [j for j in jobs if j["state"] == "RUNNING"]
        if not requeued_by_admin and running and _step(work) >= 1000:
            requeued_by_admin.append(running[0]["id"])
            subprocess.run(["scontrol", "requeue", running[0]["id"]], check=True, timeout=30)

    log, submitted = _drive(_controller(work), work, on_poll=requeue_once)
    assert submitted == requeued_by_admin, log[-4000:]  # one submission, one id
    assert "Trying to restart" not in log and "Error in rule" not in log, log[-4000:]

    job_id = submitted[0]
    info = _scontrol(job_id)
    rows = _attempts(work)
    ends = [r for r in rows if r["event"] == "end"]
    assert ends[0]["outcome"] == "preempted" and "SIGTERM" in ends[0]["detail"], _tsv(work)
    assert "requeued" in [r["outcome"] for r in ends[1:-1]], _tsv(work)  # (b) the time-limit warning
    assert ends[-1]["outcome"] == "finished" and int(ends[-1]["step"]) == steps, _tsv(work)
    # one job id throughout; SLURM's restart count names each incarnation (it may also count a
    # launch SLURM retried itself, so the numbers need not be consecutive)
    restarts = sorted(int(re.fullmatch(rf"slurm{job_id}\.r(\d+)", r["attempt"]).group(1)) for r in ends)
    assert restarts[0] == 0 and len(set(restarts)) == len(ends) >= 3, _tsv(work)
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) == restarts[-1], info
    assert info["NodeList"] in ("n[1-2]", "n1,n2"), info  # one rank on each node

    _same_weights(load_checkpoint(work / RUN / "checkpoint.pt"), reference, steps)
    # every attempt kept its own log, per rank; the rule log labels the ranks (srun --label)
    for n in restarts:
        for rank, node in ((0, "n1"), (1, "n2")):
            text = (work / ATTEMPTS / f"slurm{job_id}.r{n}.rank{rank}.log").read_text()
            assert f"rank {rank}, on" in text and f"node {node} of" in text and f"requeued {n} time" in text
    rule_log = (work / "logs/campaign/train/checkerboard/fm_ot.log").read_text()
    assert re.search(r"^0: ", rule_log, re.MULTILINE) and re.search(r"^1: ", rule_log, re.MULTILINE)

    # MLflow: one run, tagged with the job and its last incarnation; every loss window once
    from mlflow import MlflowClient

    train = json.loads((work / RUN / "train.json").read_text())
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run = client.get_run(train["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["fmrepro.slurm.job_id"] == job_id
    assert run.data.tags["fmrepro.slurm.restart_count"] == str(restarts[-1])
    logged = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert len(logged) == len(set(logged)) and set(range(100, steps + 1, 100)) <= set(logged)


@pytest.mark.timeout(1200)
def test_a_restarted_controller_never_leaves_two_writers(tmp_path, steps, reference):
    work = _workdir(tmp_path, steps, runtime=10)  # no time limit in the way here
    first = _controller(work)
    first_job, deadline = None, time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        running = [j for j in _train_jobs() if j["state"] == "RUNNING"]
        if running and _step(work) >= 250:
            first_job = running[0]["id"]
            break
        time.sleep(1)
    assert first_job, (work / "controller.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)  # the login session dies; the SLURM job runs on
    first.wait()
    unlock = subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--unlock", "--configfile",
                             "params.yaml"], cwd=work, env=env(), capture_output=True, text=True, timeout=300)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    log, jobs = _drive(_controller(work), work)
    assert len(jobs) == 2 and jobs[0] == first_job, log[-4000:]
    dup = jobs[1]
    rows = _attempts(work)
    # the duplicate took the run directory only after the first job released it
    first_end = next(r for r in rows if r["attempt"] == f"slurm{first_job}.r0" and r["event"] == "end")
    lock = next(r for r in rows if r["attempt"] == f"slurm{dup}.r0" and r["event"] == "lock")
    assert f"SLURM job {first_job}" in lock["detail"] and lock["time"] >= first_end["time"], _tsv(work)
    assert first_end["outcome"] == "finished" and int(first_end["step"]) == steps, _tsv(work)
    dup_end = next(r for r in rows if r["attempt"] == f"slurm{dup}.r0" and r["event"] == "end")
    assert dup_end["outcome"] == "finished", _tsv(work)
    dup_log = (work / ATTEMPTS / f"slurm{dup}.r0.rank0.log").read_text()
    assert "waiting for it to finish" in dup_log and f"at step {steps}/{steps}" in dup_log
    assert _scontrol(first_job)["JobState"] == "COMPLETED" and _scontrol(dup)["JobState"] == "COMPLETED"
    _same_weights(load_checkpoint(work / RUN / "checkpoint.pt"), reference, steps)
