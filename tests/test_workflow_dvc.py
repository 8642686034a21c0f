"""dvc.yaml: the same DAG as Snakemake; a changed job parameter re-runs only that job.

Runs the real stages on a shrunken copy of the smoke params (2 jobs, tens of steps) in a
temporary copy of the project (dvc.yaml, params, fmcore sources as stage deps).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
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


def _runs_file(project: Path, check: bool = False) -> subprocess.CompletedProcess:
    """``python -m fmcore.config dvc-runs`` in ``project``: writes (or checks) params/dvc/smoke.runs.yaml."""
    cmd = [sys.executable, "-m", "fmcore.config", "dvc-runs", "--params", "params/smoke.yaml"]
    out = subprocess.run([*cmd, *(["--check"] if check else [])], cwd=project, env=env(), capture_output=True, check=False,
                         text=True, timeout=120)
    assert check or out.returncode == 0, out.stderr
    return out


def _git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr[-2000:]}"
    return out.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git + DVC project (``dvc exp`` needs git) with the real dvc.yaml and tiny params."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "fmcore", tmp_path / "fmcore", ignore=shutil.ignore_patterns("__pycache__"))
    write_yaml(tmp_path / "params" / "smoke.yaml", _tiny_params())
    _runs_file(tmp_path)
    (tmp_path / ".gitignore").write_text("/mlflow.db*\n/mlartifacts/\n")
    _git("init", "-q", cwd=tmp_path)
    _git("config", "user.email", "test@example.invalid", cwd=tmp_path)
    _git("config", "user.name", "fmrepro test", cwd=tmp_path)
    _dvc("init", "-q", cwd=tmp_path)
    _git("add", "-A", cwd=tmp_path)
    _git("commit", "-qm", "project", cwd=tmp_path)
    return tmp_path


def _switch_experiment(project: Path, name: str) -> None:
    """A DVC project in ``project`` with the real dvc.yaml switched, as documented, to params/<name>.yaml."""
    (project / "params" / "dvc").mkdir(parents=True)
    for file in (f"{name}.yaml", f"dvc/{name}.runs.yaml"):
        shutil.copy(ROOT / "params" / file, project / "params" / file)
    text = (ROOT / "dvc.yaml").read_text()
    (project / "dvc.yaml").write_text(text.replace("params/smoke.yaml", f"params/{name}.yaml")
                                      .replace("params/dvc/smoke.runs.yaml", f"params/dvc/{name}.runs.yaml"))
    _dvc("init", "--no-scm", "-q", cwd=project)


def test_params_file_named_once_and_paper_grid_resolves(tmp_path):
    """dvc.yaml names the params file only in `vars`; pointing it at paper.yaml gives the paper grid."""
    text = (ROOT / "dvc.yaml").read_text()
    lines = [ln.strip() for ln in text.splitlines()
             if "params/smoke.yaml" in ln and not ln.strip().startswith("#")]
    assert lines == ["- params/smoke.yaml", "- params_file: params/smoke.yaml"]
    assert [ln.strip() for ln in text.splitlines() if "smoke.runs.yaml" in ln and not ln.strip().startswith("#")] \
        == ["- params/dvc/smoke.runs.yaml"]
    _switch_experiment(tmp_path, "paper")
    stages = _dvc("stage", "list", "--name-only", cwd=tmp_path).stdout.split()
    paper = load_yaml(ROOT / "params" / "paper.yaml")
    assert {f"train@{job}" for job in paper["jobs"]} <= set(stages)
    shown = _dvc("stage", "list", cwd=tmp_path).stdout
    assert "smoke.yaml" not in (tmp_path / "dvc.yaml").read_text() and "report" in stages, shown
    assert "smoke.runs.yaml" not in (tmp_path / "dvc.yaml").read_text()


def test_seeds_give_a_stage_per_run_with_the_seed_in_name_path_and_command(tmp_path):
    """With the claims grid (5 seeds): train@/evaluate@<job>-seed<k> with --seed k and <method>/seed<k>."""
    from dvc.repo import Repo

    _switch_experiment(tmp_path, "claims")
    stages = {s.name: s for s in Repo(str(tmp_path)).index.stages}
    claims = load_yaml(ROOT / "params" / "claims.yaml")
    assert len(stages) == 2 + 2 + 2 * len(claims["seeds"]) * len(claims["jobs"]) + 1
    train, ev = stages["train@digits-ot_cfm-seed2"], stages["evaluate@digits-ot_cfm-seed2"]
    assert train.cmd.endswith("--dataset digits --method ot_cfm --seed 2")
    assert ev.cmd.endswith("--dataset digits --method ot_cfm --seed 2")
    assert "results/claims/digits/ot_cfm/seed2/checkpoint.pt" in {str(o) for o in train.outs}
    assert "results/claims/digits/ot_cfm/seed2/checkpoint.pt" in {str(d) for d in ev.deps}
    assert "train@digits-ot_cfm" not in stages


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
    # the report depends on the whole params file (its runs-file check), so it is listed too
    assert re.findall(r"^(\S+):$", status, re.M) == ["train@checkerboard-fm_vp", "evaluate@checkerboard-fm_vp",
                                                      "report"]
    changed = {"train@checkerboard-fm_vp", "evaluate@checkerboard-fm_vp", "report"}
    assert _would_run(project) == changed

    ran = _dvc("repro", cwd=project).stdout
    assert set(re.findall(r"Running stage '([^']+)'", ran)) == changed
    assert untouched.stat().st_mtime_ns == before
    assert _dvc("status", "--quiet", cwd=project, check=False).returncode == 0

    # A DVC experiment with the documented -S syntax (Hydra's `++` adds the key when the job has
    # no train override yet): only that job's train/evaluate and the report run again.
    _git("add", "-A", cwd=project)
    _git("commit", "-qm", "baseline results", cwd=project)
    baseline = json.loads((project / "results/smoke/checkerboard/fm_ot/train.json").read_text())
    ran = _dvc("exp", "run", "-n", "lr-ot", "-S", "params/smoke.yaml:++jobs.checkerboard-fm_ot.train.lr=0.002",
               cwd=project).stdout
    assert set(re.findall(r"Running stage '([^']+)'", ran)) == {
        "train@checkerboard-fm_ot", "evaluate@checkerboard-fm_ot", "report"}
    exps = json.loads(_dvc("exp", "show", "--json", cwd=project).stdout)
    [exp] = [e for e in _walk(exps) if e.get("name") == "lr-ot" and e.get("data")]  # (not its group)
    params = exp["data"]["params"]["params/smoke.yaml"]["data"]
    assert params["jobs"]["checkerboard-fm_ot"]["train"]["lr"] == 0.002
    metrics = exp["data"]["metrics"]["results/smoke/checkerboard/fm_ot/train.json"]["data"]
    assert metrics["final_loss"] != baseline["final_loss"] and metrics["steps"] == baseline["steps"]
    assert "results/smoke/checkerboard/fm_ot/eval/metrics.json" in exp["data"]["metrics"]

    # dvc plots show renders the loss curves and the Fig. 5 / Fig. 7 series of every job
    _dvc("plots", "show", "-o", "plots_html", cwd=project)
    html = (project / "plots_html" / "index.html").read_text()
    for job in JOBS:
        tag = job.replace("-", "_")
        for name in (f"loss/{tag}.csv", f"fig5/{tag}.csv", f"fig7/{tag}_euler.csv"):
            path = project / "reports/smoke/plots" / name
            assert re.sub(r"[/.]", "_", f"reports/smoke/plots/{name}") in html, name  # the plot's id
            header, first = path.read_text().splitlines()[:2]
            column, value = header.split(",")[1], first.split(",")[1]
            assert f'"{column}": "{value}"' in html, (name, column, value)  # its data, embedded


def _walk(node):
    """Every dict in ``dvc exp show --json`` output (its nesting differs between versions)."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_dvc_repro_with_seeds_and_a_stale_runs_file_refused(project):
    """Two seeds: one stage per (job, seed) in seed<k>/ directories; a seed added to the params
    without regenerating the runs file stops the report with the command that fixes it; after
    regenerating, only the new seed's stages (and the report) run."""
    params = load_yaml(project / "params/smoke.yaml")
    params["seeds"] = [0, 1]
    write_yaml(project / "params/smoke.yaml", params)
    _runs_file(project)
    ran = set(re.findall(r"Running stage '([^']+)'", _dvc("repro", cwd=project).stdout))
    runs = {f"{job}-seed{k}" for job in JOBS for k in (0, 1)}
    assert ran == {"prepare@checkerboard", "reference@checkerboard", "report",
                   *(f"{stage}@{run}" for stage in ("train", "evaluate") for run in runs)}
    for k in (0, 1):
        assert (project / f"results/smoke/checkerboard/fm_ot/seed{k}/eval/metrics.json").is_file()
    assert not (project / "results/smoke/checkerboard/fm_ot/checkpoint.pt").exists()
    seeds_csv = (project / "reports/smoke/table1_seeds.csv").read_text()
    assert seeds_csv.count("fm_ot") >= 2 and seeds_csv.count("fm_vp") >= 2, seeds_csv

    kept = project / "results/smoke/checkerboard/fm_ot/seed0/checkpoint.pt"
    before = kept.stat().st_mtime_ns
    params["seeds"] = [0, 1, 2]
    write_yaml(project / "params/smoke.yaml", params)
    failed = _dvc("repro", cwd=project, check=False)
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "stale" in text and "missing run 'checkerboard-fm_ot-seed2'" in text, text
    assert "python -m fmcore.config dvc-runs --params params/smoke.yaml" in text
    assert _runs_file(project, check=True).returncode == 2

    _runs_file(project)
    ran = set(re.findall(r"Running stage '([^']+)'", _dvc("repro", cwd=project).stdout))
    assert ran == {"report", *(f"{stage}@{job}-seed2" for stage in ("train", "evaluate") for job in JOBS)}
    assert kept.stat().st_mtime_ns == before
