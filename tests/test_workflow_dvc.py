"""dvc.yaml: the same DAG as Snakemake; a changed job parameter re-runs only that job.

Runs the real stages on a shrunken copy of the smoke params (2 jobs, tens of steps) in a
temporary copy of the project (dvc.yaml, params, fmcore sources as stage deps).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from workflow_util import DVC, ROOT, env, load_yaml, tiny_smoke_params, write_yaml

pytestmark = pytest.mark.slow

JOBS = ("checkerboard-fm_ot", "checkerboard-fm_vp")


def _tiny_params() -> dict:
    p = tiny_smoke_params()
    p["datasets"] = {"checkerboard": p["datasets"]["checkerboard"]}
    p["jobs"] = {k: p["jobs"][k] for k in JOBS}
    return p


def _dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    e = env()
    e["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd}/mlflow.db"
    out = subprocess.run([str(DVC), *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=900)
    if check:
        assert out.returncode == 0, f"dvc {' '.join(args)}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "fmcore", tmp_path / "fmcore", ignore=shutil.ignore_patterns("__pycache__"))
    write_yaml(tmp_path / "params" / "smoke.yaml", _tiny_params())
    _dvc("init", "--no-scm", "-q", cwd=tmp_path)
    return tmp_path


def _would_run(project: Path) -> set[str]:
    out = _dvc("repro", "--dry", cwd=project).stdout
    return set(re.findall(r"Running stage '([^']+)'", out))


def test_dvc_repro_then_one_lr_change_reruns_only_that_job(project):
    ran = _dvc("repro", cwd=project).stdout
    expected = {"prepare@checkerboard", "reference@checkerboard", "report"}
    expected |= {f"{stage}@{job}" for stage in ("train", "evaluate") for job in JOBS}
    assert set(re.findall(r"Running stage '([^']+)'", ran)) == expected
    assert _dvc("status", "--quiet", cwd=project, check=False).returncode == 0
    assert _would_run(project) == set()
    metrics = json.loads(_dvc("metrics", "show", "--json", cwd=project).stdout)
    shown = json.dumps(metrics)
    for job in JOBS:
        dataset, method = job.split("-")
        assert f"results/smoke/{dataset}/{method}/train.json" in shown
        assert f"results/smoke/{dataset}/{method}/eval/metrics.json" in shown
    assert (project / "reports/smoke/table1.csv").is_file()

    untouched = project / "results/smoke/checkerboard/fm_ot/checkpoint.pt"
    before = untouched.stat().st_mtime_ns
    params = load_yaml(project / "params/smoke.yaml")
    params["jobs"]["checkerboard-fm_vp"]["train"] = {"lr": 5e-4}
    write_yaml(project / "params/smoke.yaml", params)

    status = _dvc("status", cwd=project, check=False).stdout
    assert re.findall(r"^(\S+):$", status, re.M) == ["train@checkerboard-fm_vp", "evaluate@checkerboard-fm_vp"]
    # --dry judges each stage on its current deps; the report follows once they have run
    assert _would_run(project) == {"train@checkerboard-fm_vp", "evaluate@checkerboard-fm_vp"}
    changed = {"train@checkerboard-fm_vp", "evaluate@checkerboard-fm_vp", "report"}

    ran = _dvc("repro", cwd=project).stdout
    assert set(re.findall(r"Running stage '([^']+)'", ran)) == changed
    assert untouched.stat().st_mtime_ns == before
    assert _dvc("status", "--quiet", cwd=project, check=False).returncode == 0
