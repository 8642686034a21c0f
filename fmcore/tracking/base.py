"""Small helpers of the MLflow adapter: tracking URI, params flattening, secret masking, git commit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_URI", "MASK", "absolute_store_uri", "check_cluster_store", "fail_fast_http", "flatten_params", "git_commit",
           "mask_secret_tree",
           "mask_secrets", "redact_uri", "scrub", "standard_tags", "tracking_uri"]

DEFAULT_URI = "sqlite:///mlflow.db"
SECRET_KEY = re.compile(r"(token|passw(or)?d|secret|api[_.-]?key|credential|private[_.-]?key)", re.I)
MASK = "***"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_store_uri(uri: str) -> str:
    """``sqlite:///relative.db`` made absolute (other URIs unchanged). MLflow caches a store per
    URI string, so a relative one opened in one working directory would keep reading that
    directory's file after a ``chdir`` in the same process."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def fail_fast_http(timeout_s: int) -> None:
    """Make MLflow's HTTP client fail at once on a down server (no retries) and bound a slow
    one by ``timeout_s``, unless the user set either variable: MLflow's default retries block
    for minutes, and callers have their own fallback or back-off."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))


def standard_tags() -> dict[str, str]:
    """MLflow's own run tags (filled in the UI's Source/Version/User columns): the entry point
    (``python -m fmcore.train`` -> ``fmcore.train``), the git commit and the user."""
    import getpass
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name.removesuffix(".__main__") if spec else Path(sys.argv[0]).name
    tags = {"mlflow.source.name": name or "python", "mlflow.source.type": "LOCAL"}
    commit = git_commit()
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        pass
    return tags


def check_cluster_store(uri: str, executor: str | None) -> None:
    """Refuse a file-based store (``sqlite:``, ``file:``, a plain path) under the SLURM executor.

    Jobs on many nodes writing one SQLite file on a shared filesystem (NFS, Lustre without
    flock) lose or corrupt records. ``FMREPRO_ALLOW_SQLITE_ON_SLURM=1`` allows it where every
    "node" shares one local disk (the one-machine test cluster).

    Raises:
        ValueError: one line naming the recipe (docs/workflow.md, "Tracking server").
    """
    if not executor or executor.replace("-", "_") != "slurm":  # slurm-jobstep runs inside a job
        return
    if uri.startswith(("http://", "https://", "postgresql", "mysql", "databricks")):
        return
    if os.environ.get("FMREPRO_ALLOW_SQLITE_ON_SLURM") == "1":
        return
    raise ValueError(f"MLFLOW_TRACKING_URI={uri} is a file store, unsafe for SLURM jobs on a shared "
                     "filesystem: start 'python -m fmcore.tracking server --root DIR' once and export "
                     "MLFLOW_TRACKING_URI "
                     "to its URL (docs/workflow.md, 'Tracking server')")


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested dicts to dotted keys, ``{"train": {"lr": 1e-3}} -> {"train.lr": "0.001"}``."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


def mask_secrets(flat: Mapping[str, str]) -> dict[str, str]:
    """Replace the value of every key that looks like a secret (token, password, api key) by ``***``."""
    return {k: (MASK if SECRET_KEY.search(k) else v) for k, v in flat.items()}


def mask_secret_tree(value: Any) -> Any:
    """A copy of a nested params tree with the value of every secret-looking key replaced by ``***``."""
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and SECRET_KEY.search(k) else mask_secret_tree(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secret_tree(v) for v in value]
    return value


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its user info masked: ``http://u:pw@host`` -> ``http://u:***@host``.

    Query parameters that look like secrets (``?token=...``) are masked too. Use it wherever a
    tracking URI is printed, stored or written into a report.
    """
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None and not (parts.query and SECRET_KEY.search(parts.query)):
        return uri
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:{MASK}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    query = parts.query
    if query and SECRET_KEY.search(query):
        query = urllib.parse.urlencode([(k, MASK if SECRET_KEY.search(k) else v)
                                        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)], safe="*")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, uri: str) -> str:
    """``text`` (an error message) with ``uri`` and its password replaced by their redacted forms."""
    redacted = redact_uri(uri)
    text = text.replace(uri, redacted)
    try:
        password = urllib.parse.urlsplit(uri).password
    except ValueError:
        password = None
    return text.replace(password, MASK) if password else text


def git_commit(cwd: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout holding ``cwd`` (default: the one this code runs
    from, so a run started in a working directory outside it still records the code's commit),
    or ``"unknown"`` outside a git checkout (e.g. an installed wheel)."""
    cwd = Path(__file__).resolve().parent if cwd is None else cwd
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
