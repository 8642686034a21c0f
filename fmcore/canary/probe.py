"""One job through the canary: a training step, a checkpoint round trip, one batch per evaluation part.

Everything runs through the code the campaign runs: ``train_loop`` (steps = 1, the job's
precision, Adam, EMA, gradient clipping, ``torch.compile`` if set) writes the real
``checkpoint.pt``, which ``load_eval_model`` reads back (weights-only loader, header check,
sha256). Then, on the reloaded field, one batch of each evaluation part at its configured
size: ``nll`` and ``dt_nll`` (the during-training NLL, whose batch is ``nll_n``): one field
evaluation with its divergence (exact, or Hutchinson with the configured probes), i.e. one
NFE of the NLL's augmented ODE; ``sample``: one field evaluation without gradients at
``quality.batch_size`` (one NFE of dopri5); ``features``: the quality metric's feature
network on that batch (Inception for ``fid``; an untrained digits CNN for ``fd_digits``, the
same cost; none for ``w2_2d``). A whole ODE solve is not run: its memory is that of one NFE
and its time is NFE x that of one (``python -m fmcore.plan`` does that arithmetic).

The batch of a training step is one DDP rank's micro-batch: ``batch_size / micro_batches``
(``micro_batches`` defaults to the world size ``nodes x tasks_per_node``). ``max_batch``
caps every batch (the CPU default of the CLI). On CUDA a batch that runs out of memory is
halved until one fits; the check then names the largest that fits and the
``micro_batches`` / batch size to set.

The jobs of one network (one dataset and ``models.<dataset>``: the methods of a dataset) share
it: it is built once (:class:`Network`, one copy held at a time, as in the real jobs), each job
trains one step of it with its own path and objective, and only the network's first job writes
and reloads the checkpoint; the others train and evaluate that reloaded network, read through
their own path (``fmcore.evaluation.model.field_of``), and their row names the job whose round
trip it was. The checkpoint's bytes and code are the
same for every method of a network, and on a CPU the writes were most of the canary's time
(one 2.5-8 GiB ``checkpoint.pt`` per job of ``params/paper.yaml``).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fmcore.canary.checks import (
    JobCheck,
    PartCheck,
    first_line,
    fit_batch,
    free_memory,
    micro_batches_for,
    rank_batch,
)
from fmcore.canary.evaluation import evaluate_parts
from fmcore.canary.memory import PeakMemory
from fmcore.canary.synthetic import SyntheticDataset

__all__ = ["JobCheck", "Network", "PartCheck", "check_job", "rank_batch"]


@dataclass
class Network:
    """The network the jobs of one dataset and model configuration share (module docstring)."""

    key: str  # network_key(job)
    # the one copy held: built by the first job, then its reloaded checkpoint; each later job
    # trains one step of it and evaluates it (as training and evaluation would, one at a time)
    model: torch.nn.Module | None = None
    first: str = ""  # the job whose checkpoint round trip ``model`` came from ("": none yet)
    checkpoint_bytes: int = 0


def network_key(job: dict) -> str:
    """Jobs with equal keys train the same network: their dataset and model configuration."""
    return f"{job['dataset']}:{json.dumps(job['model'], sort_keys=True)}"


def _train(job: dict, data: object, device: torch.device, run_dir: Path, check: JobCheck,
           cap: int, net: Network) -> Path | None:
    """One step of ``job`` through ``train_loop``; writes ``checkpoint.pt`` unless the network's
    checkpoint was already round-tripped by an earlier job (then returns None)."""
    from fmcore.models import build_model
    from fmcore.objectives import build_objective
    from fmcore.paths import build_path
    from fmcore.training.loop import train_loop

    world, micro, accum = rank_batch(job)
    check.world_size, check.accumulation = world, accum
    part = PartCheck("train", micro, micro)
    out: dict[str, Path] = {}

    def step(batch: int) -> float:
        shutil.rmtree(run_dir, ignore_errors=True)
        tcfg = {**job["train"], "batch_size": batch, "micro_batches": 1, "log_every": 1,
                "checkpoint_every": 1,
                "lr_schedule": {**job["train"]["lr_schedule"], "warmup_steps": 0}}  # a 1-step run: no warm-up
        if isinstance(data, SyntheticDataset):
            data.length = max(data.length, batch)
        path = build_path(job["path"])
        if net.model is None:
            torch.manual_seed(int(tcfg["seed"]))
            net.model = build_model(job["model"])
        net.model.requires_grad_(True)  # a reloaded network comes back frozen for evaluation
        save = not net.first
        start = time.perf_counter()
        result = train_loop(model=net.model, objective=build_objective(job["path"], path), dataset=data,
                            job={**job, "train": tcfg}, run_dir=run_dir, steps=1, device=device,
                            progress_stream=io.StringIO(), save_final=save)
        if save:
            check.save_seconds = round(time.perf_counter() - start - result.seconds, 3)
        out["checkpoint"] = result.checkpoint
        return result.seconds

    fit_batch(part, step, device, cap)
    check.parts.append(part)
    if part.status == "oom":
        need = micro_batches_for(job, part.batch)
        check.advice.append(f"train: a micro-batch of {micro} does not fit, {part.batch} does: set "
                            f"train.{job['dataset']}.micro_batches: {need}" if need else
                            f"train: only a micro-batch of {part.batch} fits; no valid micro_batches")
    return out.get("checkpoint")


def check_job(job: dict, device: torch.device, *, synthetic: bool, workdir: Path, max_batch: int = 0,
              train_data: object | None = None, test_data: object | None = None,
              shared: dict[str, Network] | None = None) -> JobCheck:
    """Run the canary on one resolved job (``fmcore.config.resolve_job``); never raises for the job's own
    failures: they are the returned check's ``error`` (first line).

    Args:
        job: the resolved job.
        device: where it runs.
        synthetic: random data of the dataset's shape instead of the prepared splits.
        workdir: scratch folder; the job's checkpoint is written under it and removed after.
        max_batch: cap on every batch (0: none).
        train_data: the prepared training split (real data; loaded here when None).
        test_data: the prepared test split (real data; loaded here when None).
        shared: the network of the previous job(s), kept across calls (module docstring): a job
            of the same network reuses it, another one replaces it. None: nothing shared.
    """
    from fmcore.plan.profile import sample_shape

    key = f"{job['dataset']}-{job['method']}"
    check = JobCheck(key, job["dataset"], job["method"], str(device))
    memory = PeakMemory(device)
    run_dir = Path(workdir) / key
    shared = {} if shared is None else shared
    net_key = network_key(job)
    net = shared.get(net_key)
    if net is None:
        shared.clear()  # one network held at a time: the grid lists a dataset's jobs together
        net = shared[net_key] = Network(net_key)
    free_memory(device)
    memory.reset()
    try:
        if synthetic:
            image = job["model"]["arch"] == "unet"
            train_data = SyntheticDataset(sample_shape(job["model"]), 1, image)
            test_data = SyntheticDataset(sample_shape(job["model"]), 1, image)
        elif train_data is None or test_data is None:
            from fmcore.data import load_split

            train_data = load_split(job["paths"]["data_dir"], "train")
            test_data = load_split(job["paths"]["data_dir"], "test")
        checkpoint = _train(job, train_data, device, run_dir, check, max_batch, net)
        if checkpoint is not None:  # evaluation reloads it: the trained copy is dropped first
            net.model = None
            free_memory(device)
        else:
            check.shared_with = net.first
        net.model = evaluate_parts(job, checkpoint, test_data, device, check, max_batch, synthetic,
                                   reloaded=net.model)
        if checkpoint is not None:
            net.first, net.checkpoint_bytes = key, checkpoint.stat().st_size
        check.checkpoint_bytes = net.checkpoint_bytes
        check.ok = True
    except Exception as exc:  # noqa: BLE001 - the canary reports any failure of the job in one line
        check.error = first_line(exc)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        check.peak_bytes, check.memory_kind = memory.peak_bytes(), memory.kind
        free_memory(device)
    check.capped_at = max_batch if max_batch and any(p.wanted > max_batch for p in check.parts) else 0
    return check
