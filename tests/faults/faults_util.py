"""Helpers of the fault-injection suite (tests/faults/, docs/faults.md).

Every test runs the real CLIs (``python -m fmcore.<stage>``) in subprocesses inside a
temporary workspace (cwd) holding a shrunken copy of ``params/smoke.yaml`` and a tmp
MLflow SQLite store, injects one fault, and records what happened as one JSON line in
this session's results file (read by ``python -m tests.faults.summary``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
# Results of the last run of the suite (JSON lines); .pytest_cache is git-ignored.
from summary import session_results  # noqa: E402  (shared with the summary command)

# A secret-looking params key: it must never reach MLflow in clear (tracking masks it).
SECRET = "fmrepro-test-secret-0123456789"
# A shrunken copy of params/smoke.yaml: one tiny MLP on a small checkerboard, cheap evaluation.
TINY_EVAL = {
    "ema": True, "seed": 0,
    "nll": {"n": 32, "batch_size": 32, "exact": True, "atol": 1.0e-3, "rtol": 1.0e-3},
    "quality": {"metric": "w2_2d", "n_samples": 128, "batch_size": 128},
    "nfe": {"atol": 1.0e-3, "rtol": 1.0e-3},
    "sweep": {"solvers": ["euler"], "nfe": [4, 8], "n_samples": 64,
              "reference_atol": 1.0e-4, "reference_rtol": 1.0e-4},
    "during_training": {"every": 30, "n_samples": 64, "nll_n": 16},
    "trajectories": {"n": 8, "points": 5},
    "snapshots": {"n": 64, "t": [0.0, 0.5, 1.0]},
}
TINY = {
    "datasets": {"checkerboard": {"n_train": 2048, "n_test": 128}},
    "models": {"checkerboard": {"hidden_dim": 32, "num_layers": 2, "time_embed_dim": 16}},
    "train": {"checkerboard": {"steps": 90, "batch_size": 64, "lr": 3.0e-3, "checkpoint_every": 30,
                               "log_every": 10, "num_threads": 1, "api_token": SECRET,
                               "lr_schedule": {"kind": "poly", "warmup_steps": 5, "power": 1.0,
                                               "lr_min": 1.0e-8}}},
    "evaluate": {"checkerboard": TINY_EVAL},
}
JOBS = ("fm_ot", "fm_vp")



def deep_merge(base: dict, override: dict | None) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in (override or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else json.loads(json.dumps(value))
    return out


def tiny_params(override: dict | None = None, methods: tuple[str, ...] = JOBS) -> dict:
    """The shrunken params as a dict (relative data/results dirs, checkerboard jobs only)."""
    with open(REPO / "params" / "smoke.yaml", encoding="utf-8") as f:
        params = yaml.safe_load(f)
    params = deep_merge(params, TINY)
    params["jobs"] = {f"checkerboard-{m}": params["jobs"][f"checkerboard-{m}"] for m in methods}
    for section in ("models", "train", "evaluate", "resources"):
        params[section] = {"checkerboard": params[section]["checkerboard"]}
    params["datasets"] = {"checkerboard": params["datasets"]["checkerboard"]}
    return deep_merge(params, override)


def write_params(folder: Path, params: dict | None = None, name: str = "params.yaml") -> Path:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params if params is not None else tiny_params(), sort_keys=False))
    return path


def env(work: Path, **extra: str) -> dict:
    """Child environment: one thread, a tmp MLflow SQLite store in the workspace."""
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0",
             MLFLOW_TRACKING_URI=f"sqlite:///{Path(work) / 'mlflow.db'}", PYTHONDONTWRITEBYTECODE="1",
             GIT_PYTHON_REFRESH="quiet", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    e["PATH"] = f"{Path(PY).parent}{os.pathsep}{e.get('PATH', '')}"
    e.pop("SNAKEMAKE_PROFILE", None)
    e.update(extra)
    return e


def cli(work: Path, *args: str, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` in ``work``; output captured as text."""
    return subprocess.run([PY, "-m", *args], cwd=work, env=env(work, **extra_env), capture_output=True,
                          text=True, timeout=timeout)


def popen(work: Path, *args: str, log: Path | None = None, **extra_env: str) -> subprocess.Popen:
    """Start ``python -m <args>`` in ``work`` (own session); stdout+stderr appended to ``log``."""
    out = open(log or Path(work) / "cli.log", "a", encoding="utf-8")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen([PY, "-m", *args], cwd=work, env=env(work, **extra_env), stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    finally:
        out.close()


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, poll: float = 0.05) -> bool:
    """Poll ``predicate()`` until true; False on timeout or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    return False


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest), symlinks as their target."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text


def error_lines(stderr: str) -> list[str]:
    """The non-empty stderr lines that are not warnings from libraries."""
    return [ln for ln in stderr.splitlines() if ln.strip() and "Warning" not in ln]


def record(kind: str, name: str, **fields) -> None:
    """Append one result line for the summary (``kind``: fault | input | security)."""
    path = session_results()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"kind": kind, "name": name, "time": time.time(), **fields}, sort_keys=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def check_files(root: Path) -> tuple[int, list[str], list[str]]:
    """Load or parse every result file under ``root``.

    Returns:
        (files checked, broken files with the reason, stray temporary files).
    """
    import numpy as np
    import torch

    checked, broken, stray = 0, [], []
    for p in sorted(Path(root).rglob("*")):
        if not p.is_file() or p.name.startswith("mlflow.db") or p.suffix == ".log":
            continue
        temp = p.name.startswith(".") and (".tmp" in p.name or p.name.endswith("tmp"))
        if temp or p.name.startswith(".spool-"):
            stray.append(str(p.relative_to(root)))
            continue
        try:
            if p.suffix == ".pt":
                torch.load(p, map_location="cpu", weights_only=True)
            elif p.suffix == ".npz":
                with np.load(p, allow_pickle=False) as z:
                    for k in z.files:
                        z[k]
            elif p.suffix == ".npy":
                np.load(p, allow_pickle=False)
            elif p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".jsonl":
                for line in p.read_text(encoding="utf-8").splitlines():
                    json.loads(line)
            elif p.suffix == ".csv":
                import pandas as pd

                pd.read_csv(p)
            elif p.suffix in (".md", ".tex", ".txt", ".yaml"):
                if not p.read_text(encoding="utf-8").strip():
                    raise ValueError("empty")
            elif p.suffix == ".png":
                from PIL import Image

                with Image.open(p) as im:
                    im.load()
            elif p.suffix == ".pdf":
                data = p.read_bytes()
                if not data.startswith(b"%PDF") or b"%%EOF" not in data[-1024:]:
                    raise ValueError("no %PDF header or %%EOF trailer")
            else:
                continue
            checked += 1
        except Exception as exc:  # noqa: BLE001 - any failure to load is a broken file
            broken.append(f"{p.relative_to(root)}: {type(exc).__name__}: {str(exc)[:120]}")
    return checked, broken, stray


def loss_windows(steps: int, log_every: int = 10, checkpoint_every: int = 30) -> list[int]:
    """The steps at which an uninterrupted training logs its loss: one mean per window, a window
    ending every ``log_every`` steps, at every checkpoint and at the last step."""
    return [s for s in range(1, steps + 1) if s % log_every == 0 or s % checkpoint_every == 0 or s == steps]


def compare_checkpoints(a: Path, b: Path) -> list[str]:
    """Differences between two checkpoints: model/EMA/optimizer tensors (bitwise), step, loss tail.

    A weights-only periodic checkpoint (``kind: weights``) is compared on what it holds.
    """
    import torch

    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    diffs = [] if ca.get("kind") == cb.get("kind") else ["kind"]
    for key in ("model", "ema"):
        if key not in ca and key not in cb:
            continue
        sa, sb = ca.get(key, {}), cb.get(key, {})
        if list(sa) != list(sb):
            diffs.append(f"{key}: keys differ")
            continue
        diffs += [f"{key}.{k}" for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k])]
    oa, ob = ca.get("optimizer", {}).get("state", {}), cb.get("optimizer", {}).get("state", {})
    for i in oa:
        diffs += [f"optimizer.{i}.{k}" for k in oa[i] if not torch.equal(oa[i][k], ob[i][k])]
    for key in ("step", "loss_tail", "scheduler"):
        if ca.get(key) != cb.get(key):
            diffs.append(key)
    return diffs
