"""Time the workflow layer itself (no training): the DAG of the paper grid and DVC's checks.

    .venv/bin/python benchmarks/dag.py [--repeat 3]

Prints the wall-clock seconds of
  * ``snakemake -n --configfile params/paper.yaml`` (42 jobs; raw inputs are empty
    placeholders in a temporary working directory, nothing is written to the repository),
  * ``snakemake -n`` on the CPU default (params/smoke.yaml, 34 jobs, forced),
  * ``dvc status`` and, when the pipeline is up to date, ``dvc repro`` (then a no-op).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path, repeat: int, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    """Median seconds of ``repeat`` runs of ``cmd`` (which must succeed if ``check``) and the last result."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if check and out.returncode != 0:
            sys.exit(f"benchmark: {' '.join(cmd)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (median reported)")
    args = parser.parse_args()
    snakemake = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-n"]
    paper = ROOT / "params" / "paper.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in yaml.safe_load(paper.read_text())["datasets"].values():
            if cfg.get("raw"):
                (Path(tmp) / cfg["raw"]).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / cfg["raw"]).touch()
        secs, _ = timed([*snakemake, "-d", tmp, "--configfile", str(paper)], ROOT, args.repeat)
        print(f"snakemake -n (paper grid, 42 jobs): {secs:.2f} s")
    secs, _ = timed([*snakemake, "-F"], ROOT, args.repeat)
    print(f"snakemake -n -F (smoke grid, 34 jobs): {secs:.2f} s")
    secs, status = timed([str(BIN / "dvc"), "status", "--quiet"], ROOT, args.repeat, check=False)
    print(f"dvc status: {secs:.2f} s")
    if status.returncode == 0:
        secs, _ = timed([str(BIN / "dvc"), "repro"], ROOT, args.repeat)
        print(f"dvc repro (no-op, pipeline up to date): {secs:.2f} s")
    else:
        print("dvc repro (no-op): skipped, the pipeline is not up to date (run `dvc repro` first)")


if __name__ == "__main__":
    main()
