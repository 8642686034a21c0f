"""Overhead of ``fmcore.training.train_loop`` over a bare hand-written training loop.

Both loops train the same model (same initial weights) with the same objective, data,
batch size and Adam settings; the bare one is ``x_1 = data[perm slice]; loss =
objective(model, x_1, g).mean(); zero_grad; backward; step`` and nothing else. The trainer
adds what a real run needs: LR schedule, gradient clipping, EMA, per-chunk seeded noise
streams, the signal check, loss logging to MLflow (a real SQLite store in a temp dir,
written by the tracker's background thread) and progress lines. Repetitions alternate
(bare, trainer, bare, trainer, ...) so machine load hits both alike; the script prints the
per-step wall and CPU times (min over repetitions; CPU time counts every thread, so
the tracker's work is included) and their ratios.

    python benchmarks/train_overhead.py [--params params/smoke.yaml] [--dataset digits]
        [--method fm_ot] [--steps 40] [--reps 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from fmcore.config import load_params, resolve_job
from fmcore.data import load_split, prepare
from fmcore.models import build_model
from fmcore.objectives import build_objective
from fmcore.paths import build_path
from fmcore.tracking import start_run
from fmcore.training import train_loop


def bare_loop(model: torch.nn.Module, objective, data, job: dict, steps: int) -> tuple[float, float]:
    """The hand-written baseline; returns (wall, CPU) seconds per step."""
    tcfg = job["train"]
    adam = tcfg.get("adam", {})
    opt = torch.optim.Adam(model.parameters(), lr=tcfg["lr"], betas=tuple(adam.get("betas", (0.9, 0.999))),
                           eps=adam.get("eps", 1e-8), weight_decay=adam.get("weight_decay", 0.0),
                           fused=True)  # as the trainer
    g = torch.Generator().manual_seed(0)
    batch = tcfg["batch_size"]
    perm = torch.randperm(len(data), generator=g)
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(steps):
        lo = (s * batch) % (len(data) - batch + 1)
        x_1 = data.get_batch(perm[lo:lo + batch])
        loss = objective(model, x_1, g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def trainer(model: torch.nn.Module, objective, data, job: dict, steps: int, folder: Path,
            rep: int) -> tuple[float, float]:
    """``train_loop`` with a real MLflow tracker; returns (wall, CPU) seconds per step (loop only)."""
    job = copy.deepcopy(job)
    job["train"]["checkpoint_every"] = steps  # only the final checkpoint, outside the timed loop
    job["train"]["lr_schedule"] = {**job["train"]["lr_schedule"],
                                   "warmup_steps": min(job["train"]["lr_schedule"].get("warmup_steps", 0),
                                                       steps - 1)}
    tracker = start_run("benchmark", f"overhead/{rep}", uri=f"sqlite:///{folder / 'mlflow.db'}",
                        params=job, spool_path=folder / f"run{rep}" / "spool.jsonl")
    result = train_loop(model=model, objective=objective, dataset=data, job=job, run_dir=folder / f"run{rep}",
                        steps=steps, device=torch.device("cpu"), tracker=tracker,
                        progress_stream=io.StringIO())
    tracker.close()
    return result.seconds / steps, result.cpu_seconds / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=Path, default=Path("params/smoke.yaml"))
    p.add_argument("--dataset", default="digits")
    p.add_argument("--method", default="fm_ot")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    job = resolve_job(params, args.dataset, args.method)
    with tempfile.TemporaryDirectory(prefix="train-overhead-") as tmp:
        folder = Path(tmp)
        data_dir = Path(job["paths"]["data_dir"])
        if not (data_dir / "manifest.json").exists():
            data_dir = folder / "data"
            prepare(args.dataset, params["datasets"][args.dataset], data_dir)
        data = load_split(data_dir, "train")
        path = build_path(job["path"])
        objective = build_objective(job["path"], path)
        torch.manual_seed(0)
        init = build_model(job["model"]).state_dict()
        # Start-up costs (mlflow import, creating the SQLite schema) are not per-step overhead.
        warm = start_run("benchmark", "warm-up", uri=f"sqlite:///{folder / 'mlflow.db'}")
        warm.close()

        bare, ours = [], []
        for rep in range(args.reps):
            for which in ("bare", "trainer"):
                model = build_model(job["model"])
                model.load_state_dict(init)
                model.train()
                if which == "bare":
                    bare.append(bare_loop(model, objective, data, job, args.steps))
                else:
                    ours.append(trainer(model, objective, data, job, args.steps, folder, rep))
    print(f"{args.dataset}/{args.method} batch {job['train']['batch_size']}, {args.steps} steps x {args.reps} "
          f"reps, {args.threads} thread(s), {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
    for i, clock in enumerate(("wall", "CPU")):
        b, t = min(x[i] for x in bare), min(x[i] for x in ours)
        print(f"{clock:>4} bare loop : {b * 1e3:8.2f} ms/step (reps: {', '.join(f'{x[i] * 1e3:.1f}' for x in bare)})")
        print(f"{clock:>4} train_loop: {t * 1e3:8.2f} ms/step (reps: {', '.join(f'{x[i] * 1e3:.1f}' for x in ours)})")
        print(f"{clock:>4} ratio trainer/bare = {t / b:.3f} (overhead {100 * (t / b - 1):+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
