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
    """Create empty stand-ins for the raw inputs a params file names (dry runs only)."""
    for cfg in params["datasets"].values():
        if cfg.get("raw"):
            path = workdir / cfg["raw"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
