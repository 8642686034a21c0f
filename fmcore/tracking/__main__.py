"""``python -m fmcore.tracking flush SPOOL [--uri URI]``: deliver records spooled while the store was down."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmcore.tracking.tracker import flush_spool


def main(argv: list[str] | None = None) -> int:
    """``python -m fmcore.tracking flush SPOOL [--uri URI]``."""
    parser = argparse.ArgumentParser(prog="python -m fmcore.tracking")
    sub = parser.add_subparsers(dest="cmd", required=True)
    fl = sub.add_parser("flush", help="deliver the records left in a spool file")
    fl.add_argument("spool", type=Path)
    fl.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    args = parser.parse_args(argv)
    try:
        ok = flush_spool(args.spool, uri=args.uri)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("delivered" if ok else f"still pending, kept in {args.spool}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
