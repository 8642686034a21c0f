"""Does the cost planner predict what the grid takes? Predicted vs measured, per stage and in total.

    .venv/bin/python benchmarks/plan_accuracy.py [--params params/smoke.yaml] [--profile FILE]
                                                 [--work DIR] [--cores 2]

1. Predicts the grid with ``python -m fmcore.plan --json`` from the committed CPU profile
   (``benchmarks/profiles/``) *before* anything runs: no NFE is known yet for the smoke
   datasets (the paper has none), so the planner assumes ``--nfe`` (100).
2. Runs the grid as README's first command does (``snakemake --configfile P -c <cores>``) in a
   fresh working directory with its own MLflow store (sqlite there).
3. Measures what the jobs timed themselves: the training loop (``train.json`` ``train_seconds``)
   and each evaluation part (``eval/metrics.json`` ``info.<part>.seconds``; the figures are
   ``trajectories`` + ``snapshots``). Start-up, data loading, MLflow and the report are not in
   the planner's model and not in these numbers; the grid's elapsed time is printed beside.
4. Predicts again with the NFE the planner now reads from the grid's own finished MLflow
   evaluations (its first source, as on a user's cluster after the first evaluations).

Prints per stage predicted / measured seconds for both predictions; the last line is the
ratio predicted (with measured NFE) / measured over the whole grid. Exit 1 when that ratio is
outside 0.75-1.25. Needs an otherwise idle machine: the profile was measured idle, and under
a load of 4-8 the same training step took 3x longer (docs/workflow.md, "Before you submit").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fmcore.config import load_params

STAGES = ("train", "nll", "quality", "sweep", "during_training", "figures")
RANGE = (0.75, 1.25)


def _plan(params: Path, profile: Path, work: Path, env: dict) -> dict[str, dict[str, float]]:
    """(dataset/method) -> stage -> predicted seconds, from ``python -m fmcore.plan --json``."""
    out = subprocess.run([sys.executable, "-m", "fmcore.plan", "--params", str(params), "--profile", str(profile),
                          "--assume-speedup", "1", "--json"], cwd=work, env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"fmcore.plan failed: {out.stderr.strip()}")
    plan = json.loads(out.stdout)
    return {f"{j['dataset']}/{j['method']}": {"train": j["train_gpu_s"], **j["eval_parts_s"],
                                              "nfe_source": j["nfe_source"]} for j in plan["jobs"]}


def _measured(results: Path) -> dict[str, dict[str, float]]:
    """(dataset/method) -> stage -> seconds the jobs timed themselves."""
    out = {}
    for train_json in sorted(results.glob("*/*/train.json")):
        run = train_json.parent
        info = json.loads((run / "eval" / "metrics.json").read_text())["info"]
        secs = {p: float(v.get("seconds", 0.0)) for p, v in info.items()}
        out[f"{run.parent.name}/{run.name}"] = {
            "train": float(json.loads(train_json.read_text())["train_seconds"]),
            "nll": secs.get("nll", 0.0), "quality": secs.get("quality", 0.0), "sweep": secs.get("sweep", 0.0),
            "during_training": secs.get("during_training", 0.0),
            "figures": secs.get("trajectories", 0.0) + secs.get("snapshots", 0.0)}
    return out


def _totals(per_job: dict[str, dict[str, float]], jobs: list[str]) -> dict[str, float]:
    return {s: sum(float(per_job[j].get(s, 0.0)) for j in jobs) for s in STAGES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params" / "smoke.yaml")
    ap.add_argument("--profile", type=Path, default=None, help="default: the committed cpu-*.json profile")
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a fresh temporary one)")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    params = args.params.resolve()
    profile = (args.profile or min((ROOT / "benchmarks" / "profiles").glob("cpu-*.json"))).resolve()
    work = args.work or Path(tempfile.mkdtemp(prefix="plan_accuracy_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    load = os.getloadavg()[0]
    before = _plan(params, profile, work, env)
    start = time.perf_counter()
    snakemake = Path(sys.executable).with_name("snakemake")
    run = subprocess.run([str(snakemake), "-s", str(ROOT / "Snakefile"), "--configfile", str(params),
                          "-c", str(args.cores), "-d", str(work)], env=env, check=False,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"the grid failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    p = load_params(params)
    measured = _measured(work / p["results_dir"] / p["experiment"])
    after = _plan(params, profile, work, env)
    jobs = sorted(measured)
    m, b, a = _totals(measured, jobs), _totals(before, jobs), _totals(after, jobs)
    print(f"# Planner vs the {params.name} grid ({len(jobs)} jobs, -c {args.cores}) on {profile.stem}")
    print(f"load average before the run: {load:.2f}; the grid's elapsed wall time: {elapsed:.0f} s")
    print(f"NFE of the prediction after the run: {sorted({after[j]['nfe_source'] for j in jobs})}")
    print("| stage | measured s | predicted s (NFE assumed 100) | ratio | predicted s (NFE measured) | ratio |")
    print("|---|---|---|---|---|---|")
    for s in STAGES:
        print(f"| {s} | {m[s]:.1f} | {b[s]:.1f} | {b[s] / max(m[s], 1e-9):.2f} | {a[s]:.1f} | "
              f"{a[s] / max(m[s], 1e-9):.2f} |")
    total_m, total_b, total_a = sum(m.values()), sum(b.values()), sum(a.values())
    print(f"| **total** | {total_m:.1f} | {total_b:.1f} | {total_b / total_m:.2f} | {total_a:.1f} | "
          f"{total_a / total_m:.2f} |")
    ratio = total_a / total_m
    print(f"predicted/measured total (NFE from the grid's MLflow runs): {ratio:.3f}")
    return 0 if RANGE[0] <= ratio <= RANGE[1] else 1


if __name__ == "__main__":
    sys.exit(main())
