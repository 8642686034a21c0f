"""DVC round trip in a temporary copy of the repository: repro, selective re-run, push, pull."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGES = ["prepare@digits", "prepare@checkerboard"]


def _run(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dvc_repro_push_pull_round_trip(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(REPO / "fmcore", work / "fmcore", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "params", work / "params")
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, work / name)
    # `python` in the stage cmds must be this interpreter (docs/data.md: activate the venv)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1"}
    dvc = str(BIN / "dvc")
    _run(["git", "init", "-q"], work, env)
    _run([dvc, "init", "-q"], work, env)
    _run([dvc, "remote", "add", "-d", "tmpremote", str(tmp_path / "remote")], work, env)

    _run([dvc, "repro", *STAGES], work, env)
    prepared = work / "data/prepared"
    assert (prepared / "digits/train.npy").is_file() and (prepared / "checkerboard/manifest.json").is_file()
    digits_mtime = (prepared / "digits/manifest.json").stat().st_mtime_ns

    # change one dataset's params: only that dataset's stage re-runs
    params_file = work / "params/smoke.yaml"
    text = params_file.read_text()
    params = yaml.safe_load(text)
    old = params["datasets"]["checkerboard"]
    assert f"n_test: {old['n_test']}" in text
    params_file.write_text(text.replace(f"n_test: {old['n_test']}", "n_test: 123", 1))
    out = _run([dvc, "repro", *STAGES], work, env)
    assert "Running stage 'prepare@checkerboard'" in out and "Running stage 'prepare@digits'" not in out
    assert (prepared / "digits/manifest.json").stat().st_mtime_ns == digits_mtime
    assert '"test": 123' in (prepared / "checkerboard/manifest.json").read_text()

    _run([dvc, "push", *STAGES], work, env)
    before = _snapshot(prepared)
    assert len(before) == 8  # 3 checkerboard + 5 digits files
    shutil.rmtree(prepared)
    shutil.rmtree(work / ".dvc/cache")
    _run([dvc, "pull", *STAGES], work, env)
    assert _snapshot(prepared) == before  # byte-identical
    assert "up to date" in _run([dvc, "status", *STAGES], work, env)
    verify = _run([sys.executable, "-m", "fmcore.data", "verify", "--dataset", "digits"], work, env)
    assert "verify digits" in verify
