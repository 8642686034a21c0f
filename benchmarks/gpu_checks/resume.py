"""SIGTERM + resume through the real CLI in a 1-rank process group (NCCL on a GPU, gloo on the CPU).

Three runs of ``python -m fmcore.train`` (through :mod:`gpu_checks.deterministic_train`) on the
digits set of params/smoke.yaml, launched with torchrun's variables (``RANK=0``,
``WORLD_SIZE=1``, ...), so the CLI joins a 1-rank process group and trains under DDP with the
stop flag agreed in the window all-reduce, as a multi-GPU job does: an uninterrupted run; a run
sent SIGTERM after its first periodic ``last.pt`` (it must exit 75 with ``last.pt`` saved); and
the same command again, which must resume and finish. Measured: whether the resumed final
weights (model and EMA) equal the uninterrupted ones bitwise, and their max abs difference.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from fmcore.config import deep_merge, load_params, resolve_job
from fmcore.data import prepare
from fmcore.training.checkpoint import load_checkpoint

from gpu_checks.common import REPO, Row, Sizes, judged

NONDET_TOL = 1e-2  # max |resumed - uninterrupted| allowed only where torch reported non-deterministic kernels
DATASET, METHOD = "digits", "fm_ot"


def write_params(folder: Path, sizes: Sizes) -> dict:
    """params/smoke.yaml with the resume sizes, written to ``folder/params.yaml``; returns the job."""
    over = {"models": {DATASET: sizes.resume_model},
            "train": {DATASET: {"steps": sizes.resume_steps,
                                "checkpoint_every": sizes.resume_checkpoint_every,
                                "log_every": sizes.resume_log_every, "num_threads": 1 if sizes.cpu else 0}},
            "evaluate": {DATASET: {"during_training": {"every": sizes.resume_steps}}}}
    params = deep_merge(load_params(REPO / "params" / "smoke.yaml"), over)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    job = resolve_job(load_params(folder / "params.yaml"), DATASET, METHOD)
    data_dir = folder / job["paths"]["data_dir"]
    if not (data_dir / "manifest.json").exists():
        prepare(DATASET, params["datasets"][DATASET], data_dir)
    job["paths"] = {"data_dir": str(data_dir), "run_dir": str(folder / job["paths"]["run_dir"])}
    return job


def _env(folder: Path) -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def _cmd(out: str) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("deterministic_train.py")),
            "--params", "params.yaml", "--dataset", DATASET, "--method", METHOD, "--out", out]


def _compare(a: dict, b: dict) -> tuple[bool, float]:
    """(bitwise equal, max abs difference) over the model and EMA weights."""
    same, diff = True, 0.0
    for part in ("model", "ema"):
        for k, v in a[part].items():
            same = same and torch.equal(v, b[part][k])
            if v.is_floating_point():
                diff = max(diff, float((v.double() - b[part][k].double()).abs().max()))
    return same, diff


def check_resume(sizes: Sizes, folder: Path) -> tuple[list[Row], Path | None, dict]:
    """The resume rows, the uninterrupted run's final checkpoint (for the evaluation check) and the job."""
    job = write_params(folder, sizes)
    backend = "gloo" if sizes.cpu else "nccl"
    rows: list[Row] = []
    full = subprocess.run(_cmd("full"), cwd=folder, env=_env(folder), capture_output=True, text=True)
    m = re.search(r"gpu_check: process group backend=(\w+) world_size=(\d+)", full.stderr)
    got = f"{m.group(1)}, {m.group(2)} rank" if m else "none"
    rows.append(judged("resume", "process group of the CLI", got, got == f"{backend}, 1 rank",
                       f"{backend}, 1 rank", "torchrun variables, WORLD_SIZE=1"))
    if full.returncode != 0:
        rows.append(judged("resume", "uninterrupted run exit code", full.returncode, False, "0",
                           full.stderr.strip().splitlines()[-1][:200] if full.stderr.strip() else ""))
        return rows, None, job

    t0 = time.perf_counter()
    proc = subprocess.Popen(_cmd("cut"), cwd=folder, env=_env(folder), stderr=subprocess.PIPE, text=True)
    marker = folder / "cut" / "last.pt"
    while not marker.exists() and proc.poll() is None and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    cut_step = load_checkpoint(marker)["step"] if marker.exists() else None
    ok = proc.returncode == 75 and cut_step is not None and cut_step < sizes.resume_steps
    rows.append(judged("resume", "SIGTERM: exit code, step saved", f"{proc.returncode}, step {cut_step}", ok,
                       f"75, a step < {sizes.resume_steps}",
                       f"signal after the first last.pt (step {sizes.resume_checkpoint_every})"))
    resumed = subprocess.run(_cmd("cut"), cwd=folder, env=_env(folder), capture_output=True, text=True)
    ok = resumed.returncode == 0 and f"at step {cut_step}/{sizes.resume_steps}" in resumed.stderr
    rows.append(judged("resume", "resume exit code", resumed.returncode, ok, f"0, resumed at step {cut_step}",
                       "" if ok else (resumed.stderr.strip().splitlines() or [""])[-1][:200]))
    if not ok:
        return rows, folder / "full" / "checkpoint.pt", job
    same, diff = _compare(load_checkpoint(folder / "full" / "checkpoint.pt"),
                          load_checkpoint(folder / "cut" / "checkpoint.pt"))
    nondet = [line for line in (full.stderr + err + resumed.stderr).splitlines()
              if "does not have a deterministic implementation" in line]
    why = (f"torch reported non-deterministic kernels: {nondet[0][:120]}" if nondet
           else "use_deterministic_algorithms(True, warn_only=True); no non-deterministic kernel reported")
    rows.append(judged("resume", "resumed == uninterrupted (bitwise)", same,
                       same or (bool(nondet) and diff <= NONDET_TOL),
                       f"bitwise; or max diff <= {NONDET_TOL} where torch reports non-deterministic kernels",
                       why))
    rows.append(Row("resume", "max |resumed - uninterrupted| (weights)", diff, "info",
                    note=f"model + EMA after {sizes.resume_steps} steps"))
    return rows, folder / "full" / "checkpoint.pt", job
