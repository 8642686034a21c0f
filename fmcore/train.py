"""``python -m fmcore.train --params P --dataset D --method M [--steps N] [--out DIR] [--force] [...]``.

Trains one (dataset, method) job of an experiment into its run directory
(``results/<experiment>/<dataset>/<method>/``, or ``--out``): ``checkpoint.pt`` (final, with
EMA), ``last.pt`` (resume state), ``checkpoints/step_<N>.pt`` (Fig. 5's weights) and
``train.json``. If ``last.pt`` exists the job resumes from it, continuing the same MLflow
run. One process writes a run directory at a time (``fmcore.cluster.RunLock``: a duplicate
waits for the holder). SIGTERM (preemption, ``scontrol requeue``, a time limit without
warning) saves ``last.pt`` at the next step boundary and exits with code 75, so a
Snakemake retry or SLURM's own requeue resumes. SIGUSR1 (the time-limit warning the
workflow asks SLURM for, ``--signal=USR1@<lead>``) does the same and then requeues the
SLURM job itself (same job id; no Snakemake retry spent). Launch with ``torchrun`` or
``srun`` for DDP (see docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fmcore.io import atomic_write_json

if TYPE_CHECKING:  # imported inside the functions at run time (start-up cost of a bad-input exit)
    from fmcore.cluster import Attempt
    from fmcore.training.distributed import DistEnv

__all__ = ["PREEMPTED_EXIT_CODE", "main"]

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" (state saved in last.pt)
RESUME_KEYS = ("experiment", "dataset", "method", "model_config", "path_config")
# train settings that may change between a run and its resume without changing the result
HARMLESS_TRAIN_KEYS = {"checkpoint_every", "log_every", "num_threads", "compile"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fmcore.train", description=__doc__.split("\n\n")[1])
    p.add_argument("--params", type=Path, default=Path("params/smoke.yaml"), help="experiment params file")
    p.add_argument("--dataset", required=True, help="dataset name (a key of params 'datasets')")
    p.add_argument("--method", required=True, help="method name (a key of params 'methods')")
    p.add_argument("--seed", type=int, default=None,
                   help="one of the job's seeds (params 'seeds'; needed when the job has several)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps (optimizer updates)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: from the params)")
    p.add_argument("--force", action="store_true",
                   help="retrain a finished run with other settings (replaces its checkpoints)")
    p.add_argument("--attempt-log-dir", type=Path, default=None,
                   help="keep each attempt's output here, one file per rank, and attempts.tsv")
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps={args.steps}: expected a positive integer")
    return args


def _resume_state(run_dir: Path, job: dict, steps: int, force: bool = False) -> dict | None:
    from fmcore.tracking import mask_secret_tree
    from fmcore.training.checkpoint import CheckpointError, load_checkpoint

    last = run_dir / "last.pt"
    if not last.exists():
        return None
    expect = {"experiment": job["experiment"], "dataset": job["dataset"], "method": job["method"],
              "model_config": job["model"], "path_config": job["path"]}
    ckpt = load_checkpoint(last, expect=expect)
    if ckpt.get("kind", "state") != "state":
        raise CheckpointError(f"{last}: a {ckpt['kind']!r} checkpoint, not a resume state; move it away")
    have = {k: v for k, v in ckpt["train_config"].items() if k not in HARMLESS_TRAIN_KEYS}
    # the checkpoint holds the train settings with secret-looking values masked (as MLflow does)
    want = {k: v for k, v in mask_secret_tree({**job["train"], "steps": steps}).items()
            if k not in HARMLESS_TRAIN_KEYS}
    if json.dumps(have, sort_keys=True) != json.dumps(want, sort_keys=True):
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        if ckpt["step"] >= int(ckpt["train_config"].get("steps", -1)):
            # A finished run's state (train settings changed since): nothing to resume. Its final
            # checkpoint.pt (and the evaluation of it) is finished work: only --force replaces it.
            # (Snakemake and DVC delete checkpoint.pt themselves before re-running a changed job.)
            if (run_dir / "checkpoint.pt").exists() and not force:
                raise CheckpointError(
                    f"{run_dir / 'checkpoint.pt'}: a finished run ({ckpt['step']} steps); training with other "
                    f"settings ({', '.join(f'{k}: {have.get(k)} -> {want.get(k)}' for k in diff)}) would "
                    "replace it and its periodic checkpoints; pass --force to retrain")
            print(f"{last}: finished run with other train settings ({', '.join(diff)}); starting afresh",
                  file=sys.stderr)
            return None
        raise CheckpointError(f"{last}: written with other train settings ({', '.join(diff)}: "
                              f"{[have.get(k) for k in diff]} vs {[want.get(k) for k in diff]}); "
                              "move it away to start afresh")
    return ckpt


class _StopFlag:
    """Set by SIGTERM / SIGUSR1; polled at every step boundary (and while waiting for a lock)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signal = self.signal or signal.Signals(signum).name

    def is_set(self) -> bool:
        return self.signal is not None


def _run(args: argparse.Namespace, stop: _StopFlag) -> int:
    from fmcore.cluster import Attempt
    from fmcore.config import load_params, resolve_job
    from fmcore.training.distributed import read_dist_env

    job = resolve_job(load_params(args.params), args.dataset, args.method, seed=args.seed)
    run_dir = args.out or Path(job["paths"]["run_dir"])
    denv = read_dist_env()
    attempt = Attempt(run_dir, rank=denv.rank, attempt_dir=args.attempt_log_dir)
    if not attempt.open(interrupted=stop.is_set):  # a signal while another writer held the directory
        requeued = stop.signal == "SIGUSR1" and attempt.requeue_self()
        attempt.close("requeued" if requeued else "preempted",
                      detail=f"{stop.signal} while waiting for the lock")
        return PREEMPTED_EXIT_CODE
    try:
        code, outcome, step = _train(args, job, run_dir, denv, attempt, stop)
    except BaseException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        attempt.close("failed", detail=f"{type(exc).__name__}: {first}")
        raise
    attempt.close(outcome, step=step, detail=f"exit {code}" + (f", {stop.signal}" if stop.signal else ""))
    return code


def _train(args: argparse.Namespace, job: dict, run_dir: Path, denv: DistEnv, attempt: Attempt,
           stop: _StopFlag) -> tuple[int, str, int]:
    """Train the job with the run directory held; returns (exit code, outcome, step)."""
    from fmcore.data import dataset_hash, load_split
    from fmcore.models import build_model
    from fmcore.objectives import build_objective
    from fmcore.paths import build_path
    from fmcore.tracking import NullTracker, git_commit, start_run
    from fmcore.training.checkpoint import remove_stale_temp
    from fmcore.training.distributed import barrier, cleanup, init_distributed, local_device
    from fmcore.training.loop import train_loop

    tcfg = job["train"]
    steps = args.steps or int(tcfg["steps"])
    device = local_device(denv)
    cuda = device.type == "cuda"
    if int(tcfg.get("num_threads", 0)) > 0:
        torch.set_num_threads(int(tcfg["num_threads"]))
    if cuda:  # once, here, never inside the loop
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    init_distributed(denv, device)
    if not cuda and tcfg.get("precision", "fp32") != "fp32" and denv.is_main:
        print(f"note: train.precision={tcfg['precision']} applies on GPU only; training in fp32 on CPU",
              file=sys.stderr)

    torch.manual_seed(int(tcfg["seed"]))  # same initial weights on every rank
    path = build_path(job["path"])
    objective = build_objective(job["path"], path)
    model = build_model(job["model"])
    dataset = load_split(job["paths"]["data_dir"], "train", check=True)  # sha256 vs manifest first
    if denv.is_main:  # a SIGKILL mid-write leaves a temp file; the real files are intact
        for folder in (run_dir, run_dir / "checkpoints", run_dir / "mlflow_artifacts"):
            remove_stale_temp(folder)
    resume = _resume_state(run_dir, job, steps, force=args.force)
    if resume is None and denv.is_main:  # periodic checkpoints of an earlier run must not mix into Fig. 5
        for stale in sorted((run_dir / "checkpoints").glob("step_*.pt")):
            stale.unlink()

    tracker = NullTracker()
    if denv.is_main:
        tags = {"fmrepro.stage": "train", "fmrepro.dataset": job["dataset"], "fmrepro.method": job["method"],
                "fmrepro.seed": str(job["seed"]),
                "fmrepro.git_commit": git_commit(), "fmrepro.data_hash": dataset_hash(job["paths"]["data_dir"])}
        params = {k: v for k, v in job.items() if k != "paths"}
        params["train"] = {**tcfg, "steps": steps}
        tracker = start_run(job["experiment"], f"train/{job['dataset']}/{job['run']}", tags=tags,
                            params=params, run_id=resume.get("mlflow_run_id") if resume else None,
                            spool_path=run_dir / "mlflow_spool.jsonl")
        # where this attempt runs (the latest attempt's values win on a resumed run)
        tracker.set_tags({**attempt.tags(), "fmrepro.world_size": denv.world_size,
                          "fmrepro.host": socket.gethostname(),
                          "fmrepro.device": torch.cuda.get_device_name(device) if cuda else "cpu"})
        # the prepared data as the run's input (the UI's Dataset column): name + manifest hash
        tracker.log_input(job["dataset"], tags["fmrepro.data_hash"], str(job["paths"]["data_dir"]))
        if resume:
            print(f"resuming {run_dir / 'last.pt'} at step {resume['step']}/{steps}", file=sys.stderr)

    try:
        result = train_loop(model=model, objective=objective, dataset=dataset, job=job, run_dir=run_dir,
                            steps=steps, device=device, denv=denv, tracker=tracker, resume=resume,
                            should_stop=stop.is_set)
        requeued = False
        if result.preempted and denv.is_main:  # last.pt is on disk; now MLflow, then the queue
            tracker.close(status="KILLED", timeout=20.0)
            requeued = stop.signal == "SIGUSR1" and attempt.requeue_self()
        barrier(device)  # ranks leave together: an early exit would make srun kill rank 0 mid-write
    except BaseException:
        tracker.close(status="FAILED", timeout=10.0)
        raise
    finally:
        cleanup()
    if result.preempted:
        then = "the job is requeued" if requeued else "exiting for a retry"
        print(f"{stop.signal}: saved {run_dir / 'last.pt'} at step {result.step}; {then} "
              f"(exit {PREEMPTED_EXIT_CODE})", file=sys.stderr)
        return PREEMPTED_EXIT_CODE, "requeued" if requeued else "preempted", result.step
    if not denv.is_main:
        return 0, "finished", result.step
    from fmcore.data.manifest import file_digest

    # the report keeps only evaluations of this very file (fmcore.report.collect)
    tracker.set_tags({"fmrepro.checkpoint": str(result.checkpoint),
                      "fmrepro.checkpoint_sha256": file_digest(result.checkpoint)})
    delivered = tracker.close(status="FINISHED")
    metrics = {"final_loss": result.final_loss, "steps": result.step, "samples_per_s": result.samples_per_s,
               "train_seconds": result.seconds, "train_cpu_seconds": result.cpu_seconds,
               "mlflow_run_id": tracker.run_id,
               "mlflow_pending": not delivered}
    atomic_write_json(run_dir / "train.json", metrics)
    print(f"done: {job['dataset']}/{job['run']} {result.step} steps, final loss {result.final_loss:.5f}, "
          f"{result.samples_per_s:.0f} samples/s -> {run_dir}", file=sys.stderr)
    return 0, "finished", result.step


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input, 75 when preempted)."""
    stop = _StopFlag()  # first: a time-limit warning during start-up must not kill the process
    args = _parse(argv)
    try:
        return _run(args, stop)
    except ValueError as exc:  # ParamsError, DataError, CheckpointError, bad config values
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # TrainingDiverged (NaN/inf loss or weights): one line, no traceback
        from fmcore.training.loop import TrainingDiverged

        if not isinstance(exc, TrainingDiverged):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # full disk, unwritable run directory: one line, no traceback
        where = exc.filename or args.out or f"run directory of {args.dataset}/{args.method}"
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
