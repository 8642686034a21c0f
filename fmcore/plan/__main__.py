"""``python -m fmcore.plan``: what a grid will cost before it is submitted (docs/workflow.md).

::

    python -m fmcore.plan --params P [--profile FILE] [--assume-speedup X] [--ddp-efficiency E]
                          [--safety-factor K] [--nfe N] [--json]
    python -m fmcore.plan calibrate --params P [--device auto|cpu|cuda] [--max-batch B]

The first prints, per job and in total, training and evaluation GPU-hours, wall time per
submission against the job's SLURM ``runtime``, the number of submissions, the suggested
evaluation ``shards`` and the checkpoint disk (``fmcore.plan.costs``), from the device
profile of the present device (``benchmarks/profiles/<device>.json``, written by
``calibrate``; ``fmcore.plan.profile``). Without such a profile it refuses, unless told
``--assume-speedup X`` to scale another device's profile (``--profile``, default: the one
committed CPU profile). Expected NFE: the user's finished evaluations in MLflow where there
are any, else the paper's Table 1, else ``--nfe``. Errors: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fmcore.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", nargs="?", choices=["plan", "calibrate"], default="plan")
    p.add_argument("--params", default="params/smoke.yaml")
    p.add_argument("--profile", type=Path, default=None, help="device profile (default: this device's)")
    p.add_argument("--assume-speedup", type=float, default=None,
                   help="scale the profile's times by 1/X (an assumption, printed with the table)")
    p.add_argument("--ddp-efficiency", type=float, default=0.9,
                   help="multi-GPU scaling efficiency assumed for training (default %(default)s)")
    p.add_argument("--safety-factor", type=float, default=None,
                   help="time limit = estimate x this, for the suggested shards (default: plan.safety_factor, 1.5)")
    p.add_argument("--nfe", type=float, default=100.0, help="NFE assumed where neither MLflow nor the paper has one")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--device", default="auto", help="calibrate: auto (CUDA if available), cpu, cuda[:i]")
    p.add_argument("--max-batch", type=int, default=0, help="calibrate: cap the timed batch (0: per-GPU batch)")
    p.add_argument("--out", type=Path, default=None, help="calibrate: profile folder (default benchmarks/profiles)")
    return p


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.3g}"


def _table(plans: list, header: list[str]) -> str:
    rows = [("| dataset | method | GPUs | train GPU-h | train wall h / limit | submissions | eval GPU-h (nll / "
             "quality / sweep / during training) | shards (suggested) | eval h per shard / limit | disk GB | "
             "NFE (source) |"),
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in plans:
        parts = " / ".join(_hours(p.eval_parts_s.get(k, 0.0)) for k in ("nll", "quality", "sweep", "during_training"))
        rows.append(f"| {p.dataset} | {p.method} | {p.gpus} | {_hours(p.train_gpu_s)} | {_hours(p.train_wall_s)} / "
                    f"{_hours(p.train_limit_s)} | "
                    f"{p.train_submissions} | {_hours(p.eval_gpu_s)} ({parts}) | {p.shards} ({p.suggested_shards}) | "
                    f"{_hours(p.eval_wall_per_shard_s)} / {_hours(p.eval_limit_s)} | {p.disk_bytes / 1e9:.3g} | "
                    f"{p.nfe:.0f} ({p.nfe_source}) |")
    total_train = sum(p.train_gpu_s for p in plans)
    total_eval = sum(p.eval_gpu_s for p in plans)
    rows.append(f"| **total** | {len(plans)} jobs | | {_hours(total_train)} | | "
                f"{sum(p.train_submissions for p in plans)} | {_hours(total_eval)} | | | "
                f"{sum(p.disk_bytes for p in plans) / 1e9:.3g} | |")
    return "\n".join(header + [""] + rows)


def _plan(args: argparse.Namespace) -> int:
    import torch

    from fmcore.config import load_params, resolve_job, runs, uses_auto
    from fmcore.plan.auto import resolve_auto
    from fmcore.plan.costs import plan_job, profile_entry
    from fmcore.plan.nfe import ExpectedNFE, expected_nfe
    from fmcore.plan.profile import PROFILE_DIR, device_name, load_profile

    params = load_params(args.params)
    auto = uses_auto(params)
    params = resolve_auto(params, source=args.params)  # the limits and shards the workflow will use
    here = device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    path = args.profile or PROFILE_DIR / f"{here}.json"
    if args.profile is None and not path.is_file():
        if args.assume_speedup is None:
            raise ValueError(f"no device profile for this device ({here}) in {PROFILE_DIR}/; run `python -m "
                             f"fmcore.plan calibrate --params {args.params}` here, or give --profile FILE "
                             "--assume-speedup X to scale another device's")
        found = sorted(PROFILE_DIR.glob("cpu-*.json"))
        if not found:
            raise ValueError(f"--assume-speedup needs a profile to scale: none in {PROFILE_DIR}/ (give --profile)")
        path = found[0]
    profile = load_profile(path)
    speedup = args.assume_speedup or 1.0
    safety = args.safety_factor or float((params.get("plan") or {}).get("safety_factor", 1.5))
    if safety < 1:
        raise ValueError(f"--safety-factor {safety}: expected >= 1")
    nfe = expected_nfe(params["experiment"])
    plans = []
    for dataset, method, seed, _ in runs(params):  # one plan row per training run (jobs x seeds)
        job = resolve_job(params, dataset, method, seed=seed)
        expected = nfe.get((job["dataset"], job["method"]), ExpectedNFE(args.nfe, args.nfe, "--nfe (assumed)"))
        plans.append(plan_job(job, profile_entry(profile, job, str(path)), expected, speedup=speedup,
                              ddp_efficiency=args.ddp_efficiency, safety_factor=safety))
    if args.json:
        print(json.dumps({"profile": str(path), "device": profile.get("device"), "speedup": speedup,
                          "ddp_efficiency": args.ddp_efficiency, "jobs": [p.as_dict() for p in plans]}, indent=2))
        return 0
    header = [f"# Plan for {args.params} (experiment {params['experiment']!r})", "",
              (f"Device profile: `{path}` ({profile.get('device')}, measured {profile.get('created')}, "
               f"torch {profile.get('torch')}, {profile.get('threads')} threads).")]
    if args.assume_speedup:
        header.append(f"**Assumption:** the target GPU is {speedup:g}x faster per sample than that device "
                      "(not measured; calibrate on the GPU to replace it).")
    header.append(f"Training: {args.ddp_efficiency:g} multi-GPU scaling efficiency assumed for W > 1. "
                  f"Evaluation: one GPU per job or shard; suggested shards fit the limit at {safety:g}x the estimate.")
    if auto:
        header.append(f"`auto` runtimes and shards resolved from plan.profile `{params['plan']['profile']}` "
                      "(fmcore/plan/auto.py), as the workflow resolves them.")
    print(_table(plans, header))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from fmcore.config import load_params
    from fmcore.evaluation.context import resolve_device
    from fmcore.plan.profile import PROFILE_DIR, calibrate

    params = load_params(args.params)
    device = resolve_device(args.device)
    out = calibrate(params, device, max_batch=args.max_batch, out_dir=args.out or PROFILE_DIR,
                    log=lambda m: print(m, file=sys.stderr))
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 ok, 2 bad input (one line)."""
    args = _parser().parse_args(argv)
    try:
        return _calibrate(args) if args.cmd == "calibrate" else _plan(args)
    except (ValueError, OSError) as exc:  # ParamsError, PlanError, profile errors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
