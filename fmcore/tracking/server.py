"""A real MLflow tracking server for a cluster: PostgreSQL backend + ``mlflow server``.

``python -m fmcore.tracking server --root ROOT`` keeps everything under one folder the user
chooses (docs/workflow.md, "Tracking server")::

    ROOT/pg/data          PostgreSQL data directory (initdb on first start)
    ROOT/pg/socket        its Unix socket (mode 0700: only the owner connects; no TCP port)
    ROOT/pg/postgres.log  PostgreSQL's log
    ROOT/artifacts        default artifact destination (``--artifacts`` may name another path/URL)
    ROOT/auth/            basic-auth config and generated credentials (0600) when auth is on
    ROOT/mlflow.log       the MLflow server's log
    ROOT/server.json      what is running: url, pids, backend store, credentials file

PostgreSQL comes from Debian's ``postgresql`` package and is started without systemd
(``initdb`` + ``pg_ctl``; as root, through ``runuser -u postgres``). The MLflow server is
MLflow's own ``mlflow server``; bound beyond loopback it always runs MLflow's basic-auth app
(``--app-name basic-auth``) with an admin user whose credentials come from
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` or from ``ROOT/auth/credentials``
(generated, 0600; never in the repository). Clients read the same two variables.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOOPBACK", "ServerError", "ServerInfo", "read_credentials", "read_info", "restart", "start",
           "stop", "wait_ready"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DB, AUTH_DB, PG_USER = "mlflow", "mlflow_auth", "fmrepro"
_SOCKET_MAX = 100  # Unix socket paths are limited to ~107 bytes (the file name adds 14)


class ServerError(RuntimeError):
    """The server could not be started or stopped (one-line message)."""


@dataclass(frozen=True)
class ServerInfo:
    """What ``ROOT/server.json`` records about a running server."""

    url: str
    mlflow_pid: int
    backend_store_uri: str
    artifacts: str
    credentials: str | None  # path of the credentials file, None without auth
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int | None = None


def _pg_bin() -> Path:
    """Folder of PostgreSQL's server programs (``$FMREPRO_PG_BIN`` or Debian's newest)."""
    if os.environ.get("FMREPRO_PG_BIN"):
        given = Path(os.environ["FMREPRO_PG_BIN"])
        if not (given / "initdb").is_file():
            raise ServerError(f"FMREPRO_PG_BIN={given}: no initdb there")
        return given
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).parent
    raise ServerError("PostgreSQL not found: apt-get install -y postgresql (or set FMREPRO_PG_BIN)")


def _as_pg(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServerError(f"{what} failed: {tail[0]}")
    return out.stdout


def _socket_dir(root: Path) -> Path:
    sock = root / "pg" / "socket"
    if len(str(sock.resolve())) > _SOCKET_MAX:  # deep shared paths: keep the socket in /tmp
        link = root / "pg" / "socket.path"
        if link.exists() and Path(link.read_text().strip()).is_dir():
            return Path(link.read_text().strip())
        sock = Path(tempfile.mkdtemp(prefix="fmrepro-pg-"))
        link.write_text(str(sock))
    return sock


def start_postgres(root: Path) -> str:
    """Initialise (once) and start PostgreSQL under ``root/pg``; return the backend store URI.

    It listens only on a Unix socket in a 0700 folder (no TCP), so only this user connects.
    """
    root = root.resolve()
    pg, bin_dir = root / "pg", _pg_bin()
    data, sock = pg / "data", _socket_dir(root)
    pg.mkdir(parents=True, exist_ok=True)
    sock.mkdir(parents=True, exist_ok=True)
    os.chmod(sock, 0o700)
    if os.geteuid() == 0:
        if subprocess.run(_as_pg(["test", "-x", str(pg)])).returncode != 0:
            raise ServerError(f"{pg}: the postgres user cannot reach it; as root, choose a --root whose "
                              "parent folders are world-searchable (or run as a normal user)")
        shutil.chown(pg, "postgres")
        shutil.chown(sock, "postgres")
        data.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(data, "postgres")
    if not (data / "PG_VERSION").exists():
        _run(_as_pg([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust",
                     "-E", "UTF8", "--no-instructions"]), f"initdb {data}")
    status = subprocess.run(_as_pg([str(bin_dir / "pg_ctl"), "-D", str(data), "status"]),
                            capture_output=True, text=True)
    if status.returncode != 0:  # 3: not running
        _run(_as_pg([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(pg / "postgres.log"), "-w",
                     "-t", "60", "-o", f"-k {sock} -c listen_addresses=''", "start"]),
             f"starting PostgreSQL in {data} (log: {pg / 'postgres.log'})")
    have = _run(_as_pg([str(bin_dir / "psql"), "-h", str(sock), "-U", PG_USER, "-d", "postgres", "-Atc",
                        "SELECT datname FROM pg_database"]), "listing databases").split()
    for name in (DB, AUTH_DB):
        if name not in have:
            _run(_as_pg([str(bin_dir / "createdb"), "-h", str(sock), "-U", PG_USER, name]),
                 f"createdb {name}")
    return f"postgresql://{PG_USER}@/{DB}?host={sock}"


def read_credentials(path: str | Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a credentials file (``MLFLOW_TRACKING_USERNAME``/``..._PASSWORD``)."""
    pairs = (line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _credentials(root: Path, path: Path | None) -> tuple[Path, dict[str, str]]:
    """Credentials from the environment, else from ``path`` (created with a random password, 0600)."""
    path = path or root / "auth" / "credentials"
    if os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        creds = {k: os.environ[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    elif path.exists():
        creds = read_credentials(path)
        if not creds.get("MLFLOW_TRACKING_USERNAME") or not creds.get("MLFLOW_TRACKING_PASSWORD"):
            raise ServerError(f"{path}: needs MLFLOW_TRACKING_USERNAME=... and "
                              "MLFLOW_TRACKING_PASSWORD=... lines")
        return path, creds
    else:
        creds = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": secrets.token_urlsafe(24)}
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in creds.items()))
    os.chmod(path, 0o600)
    return path, creds


def _secret_file(path: Path, make: str) -> str:
    """The content of a 0600 file, created with ``make`` on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make + "\n")
    return path.read_text().strip()


def _auth_config(root: Path, backend: str) -> Path:
    """MLflow's basic-auth ini (users in their own PostgreSQL database); written 0600."""
    ini = root / "auth" / "basic_auth.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    text = ("[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {backend.replace(f'/{DB}?', f'/{AUTH_DB}?')}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # one PBKDF2 check per user and minute per worker, not per request (32 writers)
            "auth_cache_ttl_seconds = 60\n")
    fd = os.open(ini, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return ini


def _allowed_hosts(host: str, port: int) -> str:
    """MLflow's default (loopback, private ranges) plus this machine's names, for ``--allowed-hosts``."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = {socket.gethostname(), socket.getfqdn(), host} - {"0.0.0.0", "::", ""}
    return ",".join([*get_default_allowed_hosts(), *sorted(f"{n}{s}" for n in names for s in ("", ":*"))])


def wait_ready(url: str, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> bool:
    """True once the server answers HTTP (a 401 from the auth app counts as up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def start(root: str | Path, host: str = "127.0.0.1", port: int = 5000, artifacts: str | None = None,
          workers: int | None = None, auth: bool = False, credentials: str | Path | None = None,
          timeout: float = 180.0) -> tuple[ServerInfo, subprocess.Popen]:
    """Start PostgreSQL (if needed) and ``mlflow server`` in its own session; return once it answers."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    backend = start_postgres(root)
    artifacts = artifacts or str(root / "artifacts")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
           "--artifacts-destination", artifacts, "--host", host, "--port", str(port)]
    if workers:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ)
    auth = auth or host not in LOOPBACK
    cred_path = None
    if auth:
        cred_path, creds = _credentials(root, Path(credentials) if credentials else None)
        cmd += ["--app-name", "basic-auth"]
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(_auth_config(root, backend)),
                   MLFLOW_AUTH_ADMIN_USERNAME=creds["MLFLOW_TRACKING_USERNAME"],
                   MLFLOW_AUTH_ADMIN_PASSWORD=creds["MLFLOW_TRACKING_PASSWORD"],
                   # the auth app's CSRF key: the same across restarts and workers
                   MLFLOW_FLASK_SERVER_SECRET_KEY=_secret_file(root / "auth" / "flask_secret_key",
                                                               secrets.token_hex(32)))
    if host not in LOOPBACK:
        cmd += ["--allowed-hosts", _allowed_hosts(host, port)]
    log = open(root / "mlflow.log", "a")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"
    info = ServerInfo(url=url, mlflow_pid=proc.pid, backend_store_uri=backend, artifacts=artifacts,
                      credentials=str(cred_path) if cred_path else None, host=host, port=port,
                      workers=workers)
    (root / "server.json").write_text(json.dumps(info.__dict__, indent=1) + "\n")
    if not wait_ready(f"http://127.0.0.1:{port}" if host in ("0.0.0.0", "::") else url, timeout, proc):
        _kill_group(proc.pid)
        tail = (root / "mlflow.log").read_text(errors="replace").strip().splitlines()[-1:] or ["(empty)"]
        exited = proc.poll() is not None
        why = f"exited ({proc.returncode})" if exited else f"no answer within {timeout:.0f} s"
        raise ServerError(f"mlflow server {why}: {tail[0]} "
                          f"(log: {root / 'mlflow.log'})")
    return info, proc


def read_info(root: str | Path) -> ServerInfo:
    """The ``server.json`` of a server started under ``root``."""
    path = Path(root) / "server.json"
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ServerError(f"{path}: no server started there ({type(exc).__name__})") from None


def _kill_group(pid: int, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def restart(root: str | Path) -> ServerInfo:
    """Start the MLflow server of ``root/server.json`` again, with the same settings."""
    info = read_info(root)
    return start(root, host=info.host, port=info.port, artifacts=info.artifacts, workers=info.workers,
                 auth=info.credentials is not None, credentials=info.credentials)[0]


def stop(root: str | Path, postgres: bool = True, sig: int = signal.SIGTERM) -> None:
    """Stop the MLflow server recorded in ``root/server.json`` and (by default) PostgreSQL."""
    root = Path(root).resolve()
    info = read_info(root)
    _kill_group(info.mlflow_pid, sig)
    for _ in range(100):
        try:
            os.kill(info.mlflow_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        _kill_group(info.mlflow_pid, signal.SIGKILL)
    if postgres and (root / "pg" / "data" / "PG_VERSION").exists():
        _run(_as_pg([str(_pg_bin() / "pg_ctl"), "-D", str(root / "pg" / "data"), "-m", "fast", "-w", "stop"]),
             "stopping PostgreSQL")
