"""README's main command end to end: the CPU default through Snakemake, checked against MLflow.

Runs the real smoke experiment (14 trainings) in a temporary working directory with the
repository's Snakefile and default profile (2 cores); ~7 minutes on an idle 2-core machine.
FMREPRO_E2E_PARAMS=tiny runs the same grid shrunk to seconds per job (busy machines).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from workflow_util import SMOKE_PARAMS, dry_run_jobs, load_yaml, snakemake, tiny_smoke_params, write_yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("smoke")
    tiny = os.environ.get("FMREPRO_E2E_PARAMS") == "tiny"
    write_yaml(work / "params" / "smoke.yaml", tiny_smoke_params() if tiny else load_yaml(SMOKE_PARAMS))
    out = snakemake(cwd=work, timeout=2300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    assert "34 of 34 steps (100%) done" in out.stdout + out.stderr
    return work


def test_outputs_exist_and_agree_with_mlflow(smoke_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run}/mlflow.db")
    params = load_yaml(smoke_run / "params" / "smoke.yaml")
    rows = {}
    with open(smoke_run / "reports/smoke/table1.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows[(row["dataset"], row["method"])] = row
    assert set(rows) == {(j["dataset"], j["method"]) for j in params["jobs"].values()}
    for job in params["jobs"].values():
        d, m = job["dataset"], job["method"]
        run_dir = smoke_run / "results/smoke" / d / m
        train = json.loads((run_dir / "train.json").read_text())
        assert train["steps"] == params["train"][d]["steps"] and (run_dir / "checkpoint.pt").stat().st_size
        train_run = client.get_run(train["mlflow_run_id"])
        assert train_run.info.status == "FINISHED"
        assert train_run.data.tags["fmrepro.stage"] == "train"
        assert (train_run.data.tags["fmrepro.dataset"], train_run.data.tags["fmrepro.method"]) == (d, m)
        metrics = json.loads((run_dir / "eval/metrics.json").read_text())
        eval_run = client.get_run(metrics["mlflow_run_id"])
        assert eval_run.data.tags["mlflow.parentRunId"] == train["mlflow_run_id"]
        assert eval_run.data.tags["fmrepro.quality_metric"] == metrics["quality_metric"]
        for key in ("nfe", "quality"):
            assert eval_run.data.metrics[key] == pytest.approx(metrics["metrics"][key])
        assert rows[(d, m)]["mlflow_run_id"] == metrics["mlflow_run_id"]
    for fig in ("fig4_paths_2d", "fig5_quality_during_training", "fig6_trajectories", "fig7_solver_sweep"):
        assert (smoke_run / f"reports/smoke/{fig}.png").stat().st_size > 1000


def test_second_run_does_nothing(smoke_run):
    out = snakemake("-n", cwd=smoke_run)
    assert out.returncode == 0 and "Nothing to be done" in out.stdout + out.stderr


def test_snakemake_html_report_has_the_figures(smoke_run):
    out = snakemake("--report", "report.html", cwd=smoke_run)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    html = (smoke_run / "report.html").read_text(errors="replace")
    assert "fig7_solver_sweep.png" in html and "table1.csv" in html


def test_changing_one_jobs_lr_reruns_only_that_job(smoke_run):
    """Snakemake's params trigger: the job, its evaluation and the report; nothing else."""
    path = smoke_run / "params" / "smoke.yaml"
    original = path.read_text()
    params = load_yaml(path)
    params["jobs"]["digits-fm_vp"]["train"] = {"lr": 1.0e-4}
    write_yaml(path, params)
    try:
        out = snakemake("-n", cwd=smoke_run)
    finally:
        path.write_text(original)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    jobs = [(j["rule"], j["wildcards"].get("run")) for j in dry_run_jobs(text)]  # {run}: <method>[/seed<k>]
    assert sorted(jobs, key=str) == sorted(
        [("train", "fm_vp"), ("evaluate", "fm_vp"), ("report", None), ("all", None)], key=str)
