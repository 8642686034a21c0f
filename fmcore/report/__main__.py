"""``python -m fmcore.report``: write ``reports/<experiment>/`` from MLflow.

Usage::

    python -m fmcore.report --params params/smoke.yaml          # rows = the params' jobs
    python -m fmcore.report --experiment smoke                  # rows = what MLflow holds
    python -m fmcore.report --params P [--out reports/NAME] [--tracking-uri URI] [--strict] [--no-figures]

Exit status: 0 written (missing runs are warned about on stderr and in the README),
1 bad input (one-line error), 2 written but ``--strict`` and runs are missing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fmcore.config import ParamsError, jobs, load_params
from fmcore.report.build import build_report
from fmcore.report.collect import resolve_tracking_uri
from fmcore.tracking.base import fail_fast_http, redact_uri, scrub, tracking_uri

__all__ = ["main", "parse_args"]

DEFAULT_PARAMS = "params/smoke.yaml"
# where the errors of an unreadable or unreachable store come from (one line each, no traceback)
STORE_ERRORS = ("mlflow", "sqlalchemy", "requests", "urllib3", "alembic")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m fmcore.report",
        description="Write reports/<experiment>/ (Table 1, Figures 4-7) from MLflow records.")
    parser.add_argument("--params", help=f"params YAML; its jobs are the expected rows "
                                         f"(default {DEFAULT_PARAMS} when --experiment is not given)")
    parser.add_argument("--experiment", help="MLflow experiment name; alone, rows = what MLflow holds")
    parser.add_argument("--out", help="output directory (default reports/<experiment>)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlflow.db)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when an expected run is missing")
    parser.add_argument("--no-figures", action="store_true", help="write the tables and README only")
    return parser.parse_args(argv)


def _portable(arg: str) -> str:
    """An absolute path (or sqlite URI) inside the working directory, made relative for the README."""
    prefix = "sqlite:///" if arg.startswith("sqlite:////") else ""
    path = Path(arg[len(prefix):])
    if path.is_absolute():
        try:
            return prefix + str(path.relative_to(Path.cwd()))
        except ValueError:
            return arg
    return arg


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = parse_args(argv)
    # an unreachable server fails in seconds instead of MLflow's minutes of retries
    fail_fast_http(10)
    try:
        expected, data_dir, experiment = None, "data/prepared", args.experiment
        if args.params or not args.experiment:
            params = load_params(args.params or DEFAULT_PARAMS)
            if experiment and experiment != params["experiment"]:
                raise ValueError(f"--experiment {experiment!r} does not match experiment "
                                 f"{params['experiment']!r} of {args.params}")
            experiment, expected, data_dir = params["experiment"], jobs(params), params["data_dir"]
        uri = resolve_tracking_uri(args.tracking_uri)
        out = Path(args.out) if args.out else Path("reports") / experiment
        given = argv if argv is not None else sys.argv[1:]
        command = "python -m fmcore.report " + shlex.join(_portable(redact_uri(a)) for a in given)
        report = build_report(experiment, _portable(uri), out, expected=expected, data_dir=data_dir,
                              command=command, figures=not args.no_figures)
    except (ParamsError, ValueError) as exc:  # ReportError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # full disk, unwritable output directory: one line, no traceback
        print(f"error: {exc.filename or args.out or 'reports'}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except Exception as exc:  # the store failed: MLflow, SQLAlchemy, requests errors (others re-raised)
        if not type(exc).__module__.startswith(STORE_ERRORS):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        uri = args.tracking_uri or tracking_uri()
        print(f"error: {redact_uri(uri)}: cannot read the MLflow store ({type(exc).__name__}: "
              f"{scrub(first, uri)})", file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {len(report.table.rows)} rows, {len(report.files)} files in {report.out_dir}")
    return 2 if args.strict and report.table.missing else 0


if __name__ == "__main__":
    sys.exit(main())
