"""CLI: ``python -m fmcore.data prepare|verify --params P --dataset D [--out DIR] [--raw PATH] [--force]``.

``prepare`` writes ``<data_dir>/<D>/`` (``--out`` overrides the directory, ``--raw`` the raw input);
``verify`` recomputes the sha256 of every output file against ``manifest.json``. Errors are one line
on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fmcore.config import ParamsError, load_params
from fmcore.data.errors import DataError
from fmcore.data.manifest import dataset_hash, verify
from fmcore.data.build import prepare

__all__ = ["main"]

DEFAULT_PARAMS = "params/smoke.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fmcore.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("prepare", "prepare one dataset"), ("verify", "check checksums of one dataset")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--params", default=DEFAULT_PARAMS, help=f"params file (default {DEFAULT_PARAMS})")
        p.add_argument("--dataset", required=True, help="a key under 'datasets:' in the params file")
        p.add_argument("--out", default=None, help="output directory (default <data_dir>/<dataset>)")
        if name == "prepare":
            p.add_argument("--raw", default=None, help="raw input path (overrides datasets.<D>.raw)")
            p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        params = load_params(args.params)
        if args.dataset not in params["datasets"]:
            known = ", ".join(sorted(params["datasets"]))
            raise DataError(f"{args.params}: datasets.{args.dataset}: not defined (known: {known})")
        out = Path(args.out) if args.out else Path(params["data_dir"]) / args.dataset
        start = time.perf_counter()
        if args.command == "prepare":
            cfg = params["datasets"][args.dataset]
            manifest = prepare(args.dataset, cfg, out, raw=args.raw, force=args.force)
        else:
            manifest = verify(out)
        counts = manifest["counts"]
        print(
            f"{args.command} {args.dataset}: {out} train {manifest['shapes']['train']} "
            f"test {manifest['shapes']['test']} {manifest['dtype']} (n={counts['train']}+{counts['test']}) "
            f"dataset_hash={dataset_hash(out)[:12]} in {time.perf_counter() - start:.1f}s"
        )
    except (DataError, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # full disk, unwritable output directory: one line, no traceback
        print(f"error: {exc.filename or args.out or args.dataset}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
