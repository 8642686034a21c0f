"""``python -m fmcore.canary``: one step and one evaluation batch of every job, before the campaign.

::

    python -m fmcore.canary --params P [--synthetic] [--device auto|cpu|cuda[:i]]
                            [--jobs KEY,...] [--max-batch N] [--workdir DIR] [--json] [--out FILE]

``--jobs`` takes job keys (``cifar10-fm_ot``) or dataset names (all of its jobs). On a CPU
every batch is capped at ``--max-batch`` (default 2: the paper's U-Nets at their GPU batch
would take hours on a CPU), and the table says so; on CUDA there is no cap unless given, and
a batch that runs out of memory is halved until one fits. Exit status: 0 every job OK, 1 a
job failed, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

CPU_MAX_BATCH = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fmcore.canary", description=__doc__.split("\n\n")[0])
    p.add_argument("--params", default="params/smoke.yaml")
    p.add_argument("--synthetic", action="store_true",
                   help="random data of each dataset's shape (no download)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda[:i]")
    p.add_argument("--jobs", default="", help="comma list of job keys or dataset names (default: every job)")
    p.add_argument("--max-batch", type=int, default=None,
                   help=f"cap on every batch (default: {CPU_MAX_BATCH} on a CPU, none on CUDA; 0: none)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="scratch folder for the checkpoints (default: temp)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    return p


def _select(params: dict, wanted: str) -> list[tuple[str, str]]:
    from fmcore.config import jobs

    grid = jobs(params)
    if not wanted:
        return grid
    out = []
    for name in [w.strip() for w in wanted.split(",") if w.strip()]:
        hits = [(d, m) for d, m in grid if name in (f"{d}-{m}", d)]
        if not hits:
            known = ", ".join(sorted({f"{d}-{m}" for d, m in grid} | {d for d, _ in grid}))
            raise ValueError(f"--jobs: {name!r} is neither a job nor a dataset of the params "
                             f"(known: {known})")
        out += [h for h in hits if h not in out]
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        from fmcore.config import load_params, resolve_job, seeds_of
        from fmcore.evaluation.context import resolve_device

        params = load_params(args.params)
        selected = _select(params, args.jobs)
        device = resolve_device(args.device)
        if args.max_batch is not None and args.max_batch < 0:
            raise ValueError(f"--max-batch {args.max_batch}: expected >= 0")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    from fmcore.canary.probe import check_job
    from fmcore.canary.table import format_table, to_json
    from fmcore.io import atomic_write_text

    cap = args.max_batch if args.max_batch is not None else (CPU_MAX_BATCH if device.type == "cpu" else 0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as fmcore.train sets them
        torch.backends.cudnn.allow_tf32 = True
    start = time.perf_counter()
    checks, shared = [], {}  # shared: the network of the current dataset (fmcore.canary.probe)
    with tempfile.TemporaryDirectory(prefix="fmrepro-canary-", dir=args.workdir) as tmp:
        for dataset, method in selected:
            print(f"canary {dataset}-{method} on {device} ...", file=sys.stderr, flush=True)
            job = resolve_job(params, dataset, method, seed=seeds_of(params, dataset, method)[0])  # one per job
            checks.append(check_job(job, device, synthetic=args.synthetic,
                                    workdir=Path(tmp), max_batch=cap, shared=shared))
            if not checks[-1].ok:
                print(f"  FAIL: {checks[-1].error}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    data = "synthetic data" if args.synthetic else "prepared data"
    note = (f"{args.params}: {len(checks)} job(s) on {device} ({torch.get_num_threads()} threads), {data}, "
            f"{wall:.0f} s" + (f"; every batch capped at {cap} ({device.type.upper()})" if cap else ""))
    text = to_json(checks, params=args.params, device=str(device), synthetic=args.synthetic, max_batch=cap,
                   wall_seconds=round(wall, 1))
    if args.out is not None:
        atomic_write_text(args.out, text)
    if args.json:
        print(text, end="")
    else:
        print(format_table(checks, note), end="")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
