"""Command line of the evaluation stage (docs/CONTRACTS.md, docs/evaluation.md).

::

    python -m fmcore.evaluate reference --params P --dataset D [--force]
    python -m fmcore.evaluate run --params P --dataset D --method M
        [--only nll,quality,nfe,sweep,during_training,trajectories,snapshots] [--strict] [--shard s/S]

``reference`` writes ``results/<exp>/<D>/reference/`` (statistics of the training split,
the digits feature CNN, fresh 2D samples); ``run`` evaluates the final EMA checkpoint of
``results/<exp>/<D>/<M>/`` into ``eval/metrics.json`` + npz arrays and one MLflow
evaluation run; ``--shard s/S`` computes only shard s of the per-sample work into the
shared batch cache and ``eval/shards/shard_<s>_of_<S>.json`` (a later ``run`` without
``--shard`` merges; docs/evaluation.md). Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from fmcore.config import load_params, resolve_job

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fmcore.evaluate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ref = sub.add_parser("reference", help="reference statistics / stand-in feature CNN / fresh 2D samples")
    run = sub.add_parser("run", help="evaluate one trained job")
    for p in (ref, run):
        p.add_argument("--params", default="params/smoke.yaml", help="params YAML (default %(default)s)")
        p.add_argument("--dataset", required=True)
    ref.add_argument("--force", action="store_true", help="recompute even if up to date")
    run.add_argument("--method", required=True)
    run.add_argument("--seed", type=int, default=None,
                     help="one of the job's seeds (params 'seeds'; needed when the job has several)")
    run.add_argument("--strict", action="store_true", help="exit 1 if any part's ODE solve failed")
    run.add_argument("--shard", default=None, metavar="s/S",
                     help="compute only shard s (0-based) of S of the per-sample work; merge with a plain run")
    run.add_argument("--only", default=None,
                     help="comma list of parts: nll,quality,nfe,sweep,during_training,trajectories,snapshots")
    return parser


def _shard(text: str | None) -> tuple[int, int] | None:
    """``"2/8"`` -> ``(2, 8)``; None -> None."""
    if text is None:
        return None
    try:
        s, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected s/S, e.g. 0/4") from None
    if not (n >= 1 and 0 <= s < n):
        raise ValueError(f"--shard {text!r}: expected s/S with 0 <= s < S")
    return s, n


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    try:
        params = load_params(args.params)
        if args.cmd == "reference":
            from fmcore.config import jobs, seeds_of
            from fmcore.evaluation.reference import make_reference

            methods = [m for d, m in jobs(params) if d == args.dataset]
            if not methods:
                raise ValueError(f"{args.params}: no job for dataset {args.dataset!r} under 'jobs'")
            job = resolve_job(params, args.dataset, methods[0], seed=seeds_of(params, args.dataset, methods[0])[0])
            torch.set_num_threads(int(job["evaluate"].get("num_threads", 1)) or torch.get_num_threads())
            out = make_reference(job, force=args.force)
        else:
            from fmcore.evaluation.runner import evaluate_job, parse_only

            only = parse_only(args.only)
            job = resolve_job(params, args.dataset, args.method, seed=args.seed)
            torch.set_num_threads(int(job["evaluate"].get("num_threads", 1)) or torch.get_num_threads())
            out = evaluate_job(params, args.dataset, args.method, only=only, shard=_shard(args.shard),
                               seed=args.seed)
    except (ValueError, OSError) as exc:  # ParamsError, DataError, CheckpointError are ValueErrors
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    if args.cmd == "run" and out.get("failed"):
        failed = ", ".join(out["failed"])
        print(f"warning: failed parts (not cached, see metrics.json): {failed}", file=sys.stderr)
        if args.strict:
            return 1
    shown = out.get("metrics", {k: v for k, v in out.items() if isinstance(v, (int, float))})
    print(json.dumps(shown, sort_keys=True))
    print(f"{args.cmd} {args.dataset}{'/' + args.method if args.cmd == 'run' else ''}: "
          f"done in {time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
