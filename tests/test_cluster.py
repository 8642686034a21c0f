"""fmcore.cluster without a scheduler: the run lock between real processes, the SLURM facts a
job reads (with a stand-in `scontrol`/`squeue` on PATH), per-attempt logs, and the training
command's requeue on the time-limit warning. The real-scheduler versions are in
tests/slurm/test_campaign.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from train_util import tiny_job

from fmcore.cluster import LOCK_NAME, AttemptLog, RunLock, RunLockHeld, SlurmJob, current_job, launch_group
from fmcore.cluster import runlock as runlock_mod
from fmcore.training.checkpoint import load_checkpoint

HOLD = textwrap.dedent("""
    import sys, time
    from fmcore.cluster import RunLock
    lock = RunLock(sys.argv[1], heartbeat_s=0.2)
    lock.acquire(wait=False)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
""")


def _holder(run_dir: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_dead_one_is_taken_over(tmp_path):
    proc = _holder(tmp_path, 60)
    with pytest.raises(RunLockHeld, match=rf"held by host \S+ pid {proc.pid}, since .*; refusing"):
        RunLock(tmp_path).acquire(wait=False)
    proc.kill()
    proc.wait()
    said: list[str] = []
    lock = RunLock(tmp_path)
    assert lock.acquire(wait=False, say=said.append)
    assert f"process {proc.pid}" in said[0] and "has exited" in said[0]
    holder, _ = lock.holder()
    assert holder.pid == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_second_writer_waits_for_the_holder_then_takes_the_lock(tmp_path):
    proc = _holder(tmp_path, 1.5)
    said: list[str] = []
    t0 = time.monotonic()
    lock = RunLock(tmp_path)
    assert lock.acquire(wait=True, poll_s=0.1, say=said.append)
    assert time.monotonic() - t0 > 0.5 and proc.wait(timeout=30) == 0
    assert len(said) == 1 and "waiting for it to finish" in said[0]
    lock.release()


def test_waiting_ends_when_interrupted_and_the_heartbeat_keeps_a_lock_fresh(tmp_path):
    proc = _holder(tmp_path, 60)
    try:
        calls = {"n": 0}

        def interrupted() -> bool:
            calls["n"] += 1
            return calls["n"] > 2

        assert RunLock(tmp_path).acquire(wait=True, poll_s=0.05, say=lambda m: None, interrupted=interrupted) is False
        os.utime(tmp_path / LOCK_NAME, (0, 0))
        time.sleep(0.6)  # the holder's heartbeat (0.2 s) touched it again
        assert time.time() - (tmp_path / LOCK_NAME).stat().st_mtime < 5
    finally:
        proc.kill()
        proc.wait()


def _foreign(tmp_path: Path, **fields) -> None:
    holder = {"host": "othernode", "pid": 1, "proc_start": "", "slurm_job_id": None, "slurm_restart": None,
              "group": "g", "acquired": "then", **fields}
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))


def test_holders_on_other_hosts_are_judged_by_slurm_then_by_heartbeat(tmp_path, monkeypatch):
    states = {"7": "RUNNING", "8": "PENDING"}
    monkeypatch.setattr(runlock_mod, "job_state", lambda job_id: states.get(job_id))
    me = RunLock(tmp_path, slurm=SlurmJob("9", 1, "0", "n[1-2]", "n1"))
    _foreign(tmp_path, slurm_job_id="7", slurm_restart=0)
    assert me.gone_reason(me.holder()[0]) is None  # another job, running
    _foreign(tmp_path, slurm_job_id="8", slurm_restart=0)
    assert "is PENDING" in me.gone_reason(me.holder()[0])  # requeued: that incarnation is gone
    _foreign(tmp_path, slurm_job_id="6", slurm_restart=0)
    assert "no longer listed" in me.gone_reason(me.holder()[0])
    _foreign(tmp_path, slurm_job_id="9", slurm_restart=0)  # my own job, before its requeue
    assert "requeued since" in me.gone_reason(me.holder()[0])
    _foreign(tmp_path)  # no SLURM, another host: only the heartbeat tells
    assert me.gone_reason(me.holder()[0]) is None
    os.utime(tmp_path / LOCK_NAME, (time.time() - 3600, time.time() - 3600))
    assert "no heartbeat for" in me.gone_reason(me.holder()[0])


def test_other_ranks_wait_for_their_own_rank_0(tmp_path):
    rank0 = RunLock(tmp_path, group="slurm:5.r0.step0")
    rank1 = RunLock(tmp_path, group="slurm:5.r0.step0")
    other = RunLock(tmp_path, group="slurm:5.r1.step0")
    assert rank0.acquire(wait=False)
    assert rank1.wait_for_group(poll_s=0.01)
    assert other.wait_for_group(poll_s=0.01, interrupted=lambda: True) is False
    rank0.release()


def test_launch_group_is_shared_by_the_ranks_of_one_launch():
    job = SlurmJob("12", 2, "0", "n[1-2]", "n2")
    assert launch_group(job) == "slurm:12.r2.step0"
    assert launch_group(None, {"TORCHELASTIC_RUN_ID": "abc", "TORCHELASTIC_RESTART_COUNT": "1"}) == "torchrun:abc.r1"


def _fake_slurm(tmp_path: Path, restarts: int = 2) -> Path:
    """`scontrol` and `squeue` stand-ins that log their arguments (no scheduler here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "slurm_calls.log"
    (bin_dir / "scontrol").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "scontrol $*" >> {log}
        if [ "$1" = show ]; then echo "JobId=$4 JobName=x Restarts={restarts} NodeList=n[1-2] JobState=RUNNING"; fi
        """))
    (bin_dir / "squeue").write_text(f"#!/bin/sh\necho \"squeue $*\" >> {log}\necho RUNNING\n")
    for tool in ("scontrol", "squeue"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def test_current_job_reads_the_restart_count_from_scontrol(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_fake_slurm(tmp_path, restarts=3)}:{os.environ['PATH']}")
    job = current_job({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURMD_NODENAME": "n2"})
    assert job == SlurmJob("77", 3, "0", "n[1-2]", "n2") and job.incarnation == "77.r3"
    assert current_job({"SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "1", "SLURM_JOB_NODELIST": "n1"}).restart_count == 1
    assert current_job({}) is None


def test_attempt_log_copies_output_and_indexes_attempts(tmp_path, capsys):
    log = AttemptLog(tmp_path / "a", "slurm5.r1", rank=0).tee()
    print("hello from the attempt")
    print("to stderr", file=sys.stderr)
    log.record("start", detail="attempt slurm5.r1")
    log.record("end", step=40, outcome="requeued", detail="exit 75,\tSIGUSR1")
    log.close()
    print("after close")
    text = (tmp_path / "a" / "slurm5.r1.rank0.log").read_text()
    assert "hello from the attempt" in text and "to stderr" in text and "after close" not in text
    rows = [line.split("\t") for line in (tmp_path / "a" / "attempts.tsv").read_text().splitlines()]
    assert rows[0] == ["time", "attempt", "event", "host", "step", "outcome", "detail"]
    assert rows[2][1:3] == ["slurm5.r1", "end"] and rows[2][4:] == ["40", "requeued", "exit 75, SIGUSR1"]
    AttemptLog(tmp_path / "a", "slurm5.r1", rank=1).record("end")  # ranks > 0 write no index lines
    assert len((tmp_path / "a" / "attempts.tsv").read_text().splitlines()) == 3


CLI = [sys.executable, "-m", "fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard",
       "--method", "fm_ot"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **extra}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_time_limit_warning_requeues_the_slurm_job_and_the_next_incarnation_resumes(tmp_path):
    """SIGUSR1 under SLURM: last.pt first, then `scontrol requeue <id>`, exit 75, outcome in attempts.tsv."""
    tiny_job(tmp_path, "checkerboard", "fm_ot", {"train": {"checkerboard": {"steps": 3000, "checkpoint_every": 100}}})
    bin_dir = _fake_slurm(tmp_path, restarts=0)
    env = _env(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_STEP_ID="0")
    attempts = tmp_path / "logs" / "fm_ot.attempts"
    proc = subprocess.Popen([*CLI, "--attempt-log-dir", str(attempts)], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "results/smoke/checkerboard/fm_ot"
    deadline = time.monotonic() + 300
    while not (run_dir / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err[-2000:]
    assert "requeued SLURM job 4242" in err and "requeued 0 times before" in err
    calls = (tmp_path / "slurm_calls.log").read_text().splitlines()
    assert "scontrol requeue 4242" in calls
    cut = load_checkpoint(run_dir / "last.pt")
    assert 0 < cut["step"] < 3000 and not (run_dir / LOCK_NAME).exists()
    rows = [r.split("\t") for r in (attempts / "attempts.tsv").read_text().splitlines()[1:]]
    assert [r[2] for r in rows] == ["start", "end"] and rows[1][5] == "requeued" and rows[1][4] == str(cut["step"])
    assert (attempts / "slurm4242.r0.rank0.log").read_text().count("requeued SLURM job 4242") == 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_duplicate_training_job_waits_for_the_first_and_changes_nothing(tmp_path):
    """What a restarted controller's duplicate submission does: wait, then find the work done."""
    tiny_job(tmp_path, "checkerboard", "fm_ot", {"train": {"checkerboard": {"steps": 1500, "checkpoint_every": 500}}})
    first = subprocess.Popen(CLI, cwd=tmp_path, env=_env(tmp_path), stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "results/smoke/checkerboard/fm_ot"
    deadline = time.monotonic() + 300
    while not (run_dir / LOCK_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    env = _env(tmp_path)
    second = subprocess.run([*CLI], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    _, err_first = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (err_first[-1500:], second.stderr[-1500:])
    assert "held by host" in second.stderr and f"pid {first.pid}" in second.stderr
    assert "resuming" in second.stderr and "at step 1500/1500" in second.stderr
    final = load_checkpoint(run_dir / "checkpoint.pt")
    assert final["step"] == 1500 and not (run_dir / LOCK_NAME).exists()
    ref = tmp_path / "ref"
    alone = subprocess.run([*CLI, "--out", str(ref)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr[-1500:]
    expected = load_checkpoint(ref / "checkpoint.pt")
    for part in ("model", "ema"):
        for k, v in expected[part].items():
            assert torch.equal(final[part][k], v), f"{part}.{k}"
