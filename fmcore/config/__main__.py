"""``python -m fmcore.config``: checks and files derived from a params file.

::

    python -m fmcore.config check --params P              # validate P (exit 0, or one line and 2)
    python -m fmcore.config dvc-runs --params P [--check] # write (or check) params/dvc/<name>.runs.yaml

``dvc-runs`` writes DVC's list of the grid's training runs (jobs x seeds;
``fmcore.config.dvc_runs``); ``--check`` only compares it with P and fails if it is stale.
"""

from __future__ import annotations

import argparse
import sys

from fmcore.config.dvc_runs import check_runs_file, render_runs_file, runs_file
from fmcore.config.params import ParamsError, load_params
from fmcore.io import atomic_write_text

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2: bad or stale input, one line on stderr)."""
    p = argparse.ArgumentParser(prog="python -m fmcore.config", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate a params file").add_argument("--params", required=True)
    runs = sub.add_parser("dvc-runs", help="write params/dvc/<name>.runs.yaml for dvc.yaml")
    runs.add_argument("--params", required=True)
    runs.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = p.parse_args(argv)
    try:
        params = load_params(args.params)
        if args.command == "check":
            print(f"{args.params}: valid ({len(params['jobs'])} jobs)")
        elif args.check:
            print(f"{check_runs_file(params, args.params)}: up to date")
        else:
            out = atomic_write_text(runs_file(args.params), render_runs_file(params, args.params))
            print(f"wrote {out}")
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
