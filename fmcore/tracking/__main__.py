"""``python -m fmcore.tracking {flush,server,stop}``: spool delivery and the cluster tracking server.

- ``flush SPOOL [--uri URI]`` delivers records spooled while the store was down.
- ``server --root ROOT [--host H] [--port P] [--artifacts URI] [--workers N] [--auth]
  [--credentials FILE] [--detach]`` starts PostgreSQL + ``mlflow server`` under ROOT
  (:mod:`fmcore.tracking.server`); in the foreground it runs until SIGINT/SIGTERM, then
  stops both.
- ``restart --root ROOT`` starts it again (after a crash or ``stop --keep-postgres``).
- ``stop --root ROOT [--keep-postgres]`` stops a detached server.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from fmcore.tracking.tracker import flush_spool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fmcore.tracking")
    sub = parser.add_subparsers(dest="cmd", required=True)
    fl = sub.add_parser("flush", help="deliver the records left in a spool file")
    fl.add_argument("spool", type=Path)
    fl.add_argument("--uri", default=None,
                    help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    sv = sub.add_parser("server", help="start PostgreSQL + mlflow server under ROOT")
    sv.add_argument("--root", type=Path, required=True, help="folder for the database, logs and artifacts")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (beyond loopback: basic auth is on)")
    sv.add_argument("--port", type=int, default=5000)
    sv.add_argument("--artifacts", default=None,
                    help="artifact destination (path or URL; default ROOT/artifacts)")
    sv.add_argument("--workers", type=int, default=None, help="server worker processes (MLflow's default: 4)")
    sv.add_argument("--auth", action="store_true", help="basic auth even on loopback")
    sv.add_argument("--credentials", default=None,
                    help="credentials file (default ROOT/auth/credentials; created 0600 if missing)")
    sv.add_argument("--detach", action="store_true", help="return once the server answers")
    rs = sub.add_parser("restart", help="start a stopped (or killed) server again with its recorded settings")
    rs.add_argument("--root", type=Path, required=True)
    st = sub.add_parser("stop", help="stop a server started with --detach")
    st.add_argument("--root", type=Path, required=True)
    st.add_argument("--keep-postgres", action="store_true")
    return parser


def _server(args: argparse.Namespace) -> int:
    from fmcore.tracking import server

    info, proc = server.start(args.root, host=args.host, port=args.port, artifacts=args.artifacts,
                              workers=args.workers, auth=args.auth, credentials=args.credentials)
    print(f"MLflow server at {info.url} (PostgreSQL and logs in {args.root}); "
          f"export MLFLOW_TRACKING_URI={info.url}", flush=True)
    if info.credentials:
        print(f"basic auth on: clients need MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
              f"from {info.credentials} (set -a; . {info.credentials}; set +a)", flush=True)
    if args.detach:
        return 0

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        proc.wait()
        print(f"mlflow server exited with {proc.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    server.stop(args.root)
    return 0 if proc.returncode in (0, None, -signal.SIGTERM) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fmcore.tracking``."""
    args = _parser().parse_args(argv)
    if args.cmd in ("server", "restart", "stop"):
        from fmcore.tracking.server import ServerError, restart, stop

        try:
            if args.cmd == "restart":
                print(f"MLflow server at {restart(args.root).url}", flush=True)
                return 0
            return _server(args) if args.cmd == "server" else (stop(args.root, not args.keep_postgres) or 0)
        except ServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        ok = flush_spool(args.spool, uri=args.uri)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("delivered" if ok else f"still pending, kept in {args.spool}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
