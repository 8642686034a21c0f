"""The smoke workflow's first jobs through a real SLURM scheduler and the slurm profile.

Needs a running controller (tests/slurm/start_cluster.sh, which .ci/run starts) and
FMREPRO_SLURM=1; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from workflow_util import ROOT, SMOKE_PARAMS, load_yaml, snakemake, write_yaml

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FMREPRO_SLURM") != "1", reason="needs FMREPRO_SLURM=1 and a SLURM cluster"),
]


def _small_params() -> dict:
    params = load_yaml(SMOKE_PARAMS)
    params["experiment"] = "slurmtest"
    params["datasets"]["checkerboard"].update(n_train=2000, n_test=200)
    params["train"]["checkerboard"].update(steps=20, batch_size=64, checkpoint_every=10)
    params["train"]["checkerboard"]["lr_schedule"]["warmup_steps"] = 5
    return params


def _job_state(jobid: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True, timeout=30)
    match = re.search(r"JobState=(\w+)", out.stdout)
    return match.group(1) if match else f"unknown ({out.stderr.strip()})"


def test_first_smoke_jobs_run_through_sbatch(tmp_path):
    """prepare digits + checkerboard and one short training, submitted by the slurm profile."""
    params = write_yaml(tmp_path / "params.yaml", _small_params())
    run_dir = "results/slurmtest/checkerboard/fm_ot"
    targets = ["data/prepared/digits", "data/prepared/checkerboard", f"{run_dir}/train.json"]
    (tmp_path / "slurm").symlink_to(ROOT / "slurm")  # as in the repository root
    out = snakemake(
        *targets,
        "--profile", "slurm",  # README's literal cluster command
        "--slurm-status-command", "squeue",  # no accounting storage on the test cluster
        "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "2",
        "--configfile", str(params),
        cwd=tmp_path,
        timeout=900,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "Using profiles slurm" in text

    for dataset in ("digits", "checkerboard"):
        manifest = json.loads((tmp_path / f"data/prepared/{dataset}/manifest.json").read_text())
        assert manifest["dataset"] == dataset
    train = json.loads((tmp_path / run_dir / "train.json").read_text())
    assert train["steps"] == 20
    assert (tmp_path / run_dir / "checkpoint.pt").stat().st_size > 0

    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", text)
    assert len(submitted) == 3, text[-4000:]
    for jobid, log in submitted:
        assert _job_state(jobid) == "COMPLETED", jobid
        assert os.path.isfile(log) and str(tmp_path / "logs" / "slurm") in log
    assert (tmp_path / "logs/slurmtest/train/checkerboard/fm_ot.log").stat().st_size > 0

    # a second run with nothing changed submits nothing
    again = snakemake(*targets, "--profile", "slurm", "--configfile", str(params), cwd=tmp_path)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
