"""Helpers for the workflow tests: run the repository's Snakemake / DVC from the venv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"
DVC = BIN / "dvc"
SMOKE_PARAMS = ROOT / "params" / "smoke.yaml"
PAPER_PARAMS = ROOT / "params" / "paper.yaml"


def env() -> dict:
    """Environment for child tools: one thread, the venv first on PATH, no user profile."""
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("SNAKEMAKE_PROFILE", None)
    e.pop("MLFLOW_TRACKING_URI", None)  # each run uses sqlite:///mlflow.db in its own directory
    # ... which the one-machine test cluster (one local disk) may use under the SLURM executor
    e["FMREPRO_ALLOW_SQLITE_ON_SLURM"] = "1"
    return e


def snakemake(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``snakemake`` with the repository's Snakefile; output captured as text."""
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path


def dry_run_jobs(output: str) -> list[dict]:
    """Parse ``snakemake -n`` output into one dict per job: rule, wildcards, resources, threads."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        job = {"rule": head.group(1), "wildcards": {}, "resources": {}}
        for line in block.splitlines():
            key, _, value = line.strip().partition(": ")
            if key == "wildcards":
                job["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", "))
            elif key == "resources":
                job["resources"] = dict(kv.split("=", 1) for kv in value.split(", "))
            elif key in ("threads", "output", "log"):
                job[key] = value
        jobs.append(job)
    return jobs


def placeholder_raw_inputs(params: dict, workdir: Path) -> None:
    """Create empty stand-ins for the raw inputs a params file names (dry runs only): raw data
    and the Inception file of `fid` datasets (both inputs of the workflow)."""
    paths = [cfg["raw"] for cfg in params["datasets"].values() if cfg.get("raw")]
    paths += [ev["quality"]["inception_weights"] for ev in params["evaluate"].values()
              if ev["quality"].get("inception_weights")]
    for raw in paths:
        path = workdir / raw
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def tiny_smoke_params() -> dict:
    """params/smoke.yaml shrunk to seconds per job (same grid, same code paths)."""
    p = load_yaml(SMOKE_PARAMS)
    p["datasets"]["checkerboard"].update(n_train=2000, n_test=200)
    for dataset in ("checkerboard", "digits"):
        p["train"][dataset].update(steps=20, batch_size=64, checkpoint_every=10)
        p["train"][dataset]["lr_schedule"]["warmup_steps"] = 5
        ev = p["evaluate"][dataset]
        ev["nll"].update(n=50, batch_size=50, atol=1e-3, rtol=1e-3)
        ev["quality"].update(n_samples=200, batch_size=200)
        if "classifier_steps" in ev["quality"]:
            ev["quality"]["classifier_steps"] = 50
        ev["nfe"] = {"atol": 1e-3, "rtol": 1e-3}
        ev["sweep"] = {"solvers": ["euler"], "nfe": [4, 8], "n_samples": 100,
                       "reference_atol": 1e-4, "reference_rtol": 1e-4}
        ev["during_training"] = {"every": 10, "n_samples": 100, "nll_n": 20}
        ev["trajectories"] = {"n": 8, "points": 9}
        ev["snapshots"] = {"n": 100, "t": [0.0, 0.5, 1.0]}
    return p
