"""The training loop shared by every method: one plain function, :func:`train_loop`.

Each optimizer update minimises the mean of the method's per-sample objective over one
global batch of ``batch_size`` data points x_1 (for FM-OT, the CFM loss of Sec. 3.2,
E_{t, x_0, x_1} || v_theta(t, psi_t(x_0)) - u_t(x_0 | x_1) ||^2). The batch is cut into
``micro_batches`` equal chunks; chunk k of update s draws its noise x_0, its times t and
its dequantization noise from generators seeded with ``derive_seed(seed, s, k)``. With W
DDP ranks each rank computes the chunks k = rank * (C / W) ... and DDP averages the
gradients, so the update equals the single-process one with the same ``micro_batches``
up to float summation order, and a resumed run repeats exactly the updates it would
have made. Adam, the LR schedule, gradient clipping (global norm), EMA, bf16 autocast
(GPU), checkpoints and MLflow logging are a few lines each below.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fmcore.tracking import NullTracker, Tracker, mask_secret_tree
from fmcore.training.checkpoint import FORMAT, link_or_copy, save_checkpoint
from fmcore.training.distributed import DistEnv
from fmcore.training.ema import EMA
from fmcore.training.progress import Progress
from fmcore.training.rng import derive_seed
from fmcore.training.sampler import BatchSampler
from fmcore.training.schedule import build_scheduler
from fmcore.training.state import TrainState

__all__ = ["TrainResult", "TrainingDiverged", "train_loop"]

NOISE_KEY = 1  # derive_seed(seed, step, chunk, NOISE_KEY) -> x_0, t ; DATA_KEY -> dequantization
DATA_KEY = 2


class TrainingDiverged(RuntimeError):
    """The loss or the weights became non-finite; the run stops (``last.pt`` keeps the last finite state)."""


@dataclass
class TrainResult:
    """What a call to :func:`train_loop` did."""

    step: int  # updates done in total (including before a resume)
    final_loss: float  # mean loss of the last state.LOSS_TAIL updates
    first_loss: float | None  # loss of the first update of this call (None if it did none)
    samples_per_s: float  # global samples per second during this call
    seconds: float  # wall time of this call's loop
    cpu_seconds: float  # CPU time of the process (all threads) during the loop
    preempted: bool  # stopped early by a signal; last.pt holds the state
    checkpoint: Path | None  # the final checkpoint.pt (None when preempted or not saved)


def _chunks(train_cfg: Mapping[str, Any], denv: DistEnv) -> tuple[int, int]:
    batch = int(train_cfg["batch_size"])
    chunks = int(train_cfg.get("micro_batches", denv.world_size))
    if batch % chunks or chunks % denv.world_size:
        raise ValueError(f"train.batch_size={batch}, train.micro_batches={chunks}, world size "
                         f"{denv.world_size}: need micro_batches | batch_size and world size | micro_batches")
    return chunks, batch // chunks


def train_loop(
    *,
    model: nn.Module,  # the vector-field network (unwrapped); trained in place
    objective: Callable[..., torch.Tensor],  # objective(model, x_1, generator) -> loss [B]
    dataset: Any,  # a PreparedDataset: len() and get_batch(indices) -> x_1 [B, ...]
    job: Mapping[str, Any],  # fmcore.config.resolve_job(...) of this run
    run_dir: Path,  # where checkpoints go
    steps: int,  # total optimizer updates T of the run (also the schedule's length)
    device: torch.device,
    denv: DistEnv = DistEnv(),
    tracker: Tracker | None = None,
    resume: Mapping[str, Any] | None = None,  # a loaded last.pt to continue from
    should_stop: Callable[[], bool] = lambda: False,  # polled at each step boundary (signals)
    progress_stream: Any = None,
    save_final: bool = True,  # False: nothing is written at the end (fmcore.canary's repeated probes)
) -> TrainResult:
    """Train ``model`` for ``steps`` updates (see module docstring); returns a :class:`TrainResult`."""
    tcfg = job["train"]
    tracker = tracker or NullTracker()
    chunks, chunk_size = _chunks(tcfg, denv)
    mine = range(denv.rank * chunks // denv.world_size, (denv.rank + 1) * chunks // denv.world_size)
    seed, lr = int(tcfg["seed"]), float(tcfg["lr"])
    adam = tcfg.get("adam", {})
    clip = float(tcfg.get("grad_clip", 0.0))
    ckpt_every = int(tcfg.get("checkpoint_every", steps))
    log_every = int(tcfg.get("log_every", 25))
    # Fig. 5 reads the EMA (or raw, evaluate.ema: false) weights at multiples of during_training.every
    eval_cfg = job.get("evaluate") or {}
    snapshot_every = int((eval_cfg.get("during_training") or {}).get("every", 0))
    snapshot_key = "ema" if eval_cfg.get("ema", True) else "model"
    on_gpu = device.type == "cuda"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tcfg.get("precision", "fp32"))

    model.to(device).train()
    params = list(model.parameters())  # walked once: module traversal costs ms per step
    ema = EMA(model, float(tcfg["ema_decay"]))
    # fused: one kernel for all parameters (CPU and CUDA); the default per-parameter loop
    # cost ~15 of ~120 ms per step of the digits U-Net on one CPU core (a one-off timing of opt.step)
    opt = torch.optim.Adam(params, lr=lr, betas=tuple(adam.get("betas", (0.9, 0.999))),
                           eps=float(adam.get("eps", 1e-8)), weight_decay=float(adam.get("weight_decay", 0.0)),
                           fused=device.type in ("cpu", "cuda"))  # fmt: skip
    sched = build_scheduler(opt, lr, tcfg["lr_schedule"], steps)
    scaler = torch.amp.GradScaler("cuda", enabled=on_gpu and amp_dtype is torch.float16)
    sampler = BatchSampler(len(dataset), int(tcfg["batch_size"]), seed)
    st = TrainState(model=model, ema=ema, optimizer=opt, scheduler=sched, scaler=scaler, sampler=sampler)
    if resume is not None:
        st.load_state_dict(resume, source=str(run_dir / "last.pt"))
    net: nn.Module = model
    if denv.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_gpu else None)
    if tcfg.get("compile", False):
        net = torch.compile(net)

    def header() -> dict[str, Any]:
        return {"format": FORMAT, "experiment": job["experiment"], "dataset": job["dataset"],
                "method": job["method"], "model_config": job["model"], "path_config": job["path"],
                "train_config": mask_secret_tree({**tcfg, "steps": steps}), "step": st.step, "mlflow_run_id": tracker.run_id}

    saved = {"step": st.step if resume is not None else None}  # step of the newest last.pt

    def diverged(what: str, at: int) -> TrainingDiverged:
        kept = (f"{run_dir / 'last.pt'} keeps step {saved['step']}, the last finite state"
                if saved["step"] is not None else "no last.pt was written")
        return TrainingDiverged(f"{job['dataset']}/{job['method']}: {what} at step {at}/{steps}; training "
                                f"stopped ({kept}); lower train.{job['dataset']}.lr or check the data")

    def check_weights() -> None:
        """Before a checkpoint (every rank: DDP weights are equal, so all stop together)."""
        if not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
            raise diverged("non-finite weights", st.step)

    def save(name: str, flush: bool = True) -> Path | None:
        check_weights()
        if not denv.is_main:
            return None
        if flush:  # deliver (or spool) the losses logged so far and learn the MLflow run id, so a
            tracker.flush(timeout=30.0)  # job killed after this checkpoint resumes into the same run
        out = save_checkpoint({**header(), "kind": "state", **st.state_dict()}, run_dir / name)
        saved["step"] = st.step
        return out

    def save_snapshot() -> None:
        """Fig. 5's periodic checkpoint: header + the weights evaluation reads, nothing to resume from."""
        if denv.is_main:
            weights = (ema if snapshot_key == "ema" else model).state_dict()
            save_checkpoint({**header(), "kind": "weights", snapshot_key: weights},
                            run_dir / "checkpoints" / f"step_{st.step}.pt")

    progress = Progress(steps, initial=st.step, enabled=denv.is_main, stream=progress_stream,
                        label=f"train {job['dataset']}/{job['method']}")
    pending: list[torch.Tensor] = []  # per-step losses not yet logged (one sync per log interval)
    first_loss, start_step, preempted = None, st.step, False
    t0 = t_log = time.perf_counter()
    cpu0 = time.process_time()
    step_log = st.step

    def flush_logs(agree: bool = False) -> bool:
        """Read the window's losses from the device at once and log them (the only host read of
        a window). ``agree`` (DDP, the same on every rank): the all-reduce that averages the
        losses also carries each rank's should_stop(); returns whether any rank asked to stop."""
        nonlocal pending, first_loss, t_log, step_log
        if not pending and not agree:
            return False
        flag = torch.full((), float(agree and should_stop()), device=device)
        losses = torch.stack([*pending, flag])
        if denv.distributed:  # one collective per window (nccl reduces device tensors only)
            dist.all_reduce(losses)
            losses[:-1] /= denv.world_size
        *values, stop_any = losses.tolist()  # one device sync per window
        pending = []
        if not values:
            return stop_any > 0
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:  # read here, once per window: no extra device sync per step
            raise diverged(f"non-finite loss ({values[bad[0]]})", step_log + bad[0] + 1)
        first_loss = values[0] if first_loss is None else first_loss
        st.loss_tail.extend(values)
        now = time.perf_counter()
        sps = (st.step - step_log) * sampler.batch_size / max(now - t_log, 1e-9)
        cur_lr = sched.get_last_lr()[0]
        if denv.is_main:  # one point per window: the mean loss of its updates, at its last step
            tracker.log_metrics({"loss": sum(values) / len(values), "lr": cur_lr, "samples_per_s": sps},
                                step=st.step)
        progress.update(st.step, values[-1], sps, cur_lr)
        t_log, step_log = now, st.step
        return stop_any > 0

    # The stop flag. One process (not denv.distributed): should_stop() is a Python flag, polled
    # at every step boundary (no device value read). DDP: the ranks agree on it in the
    # all-reduce that gathers each log window's losses (flush_logs), so they stop together at
    # the first window or checkpoint boundary after a signal, at most log_every steps later;
    # nothing is read from the device between those boundaries.
    agreed_stop = denv.distributed and flush_logs(agree=True)  # a signal during start-up
    while st.step < steps:
        if agreed_stop if denv.distributed else should_stop():
            flush_logs()
            save("last.pt", flush=False)  # the state first: SLURM's kill may follow; MLflow after (fmcore.train)
            progress.write(f"stopped by signal at step {st.step}/{steps}; state saved to {run_dir / 'last.pt'}")
            preempted = True
            break
        idx = sampler.next_indices()
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for j, k in enumerate(mine):
            gen_data = torch.Generator().manual_seed(derive_seed(seed, st.step, k, DATA_KEY))
            gen_noise = torch.Generator(device).manual_seed(derive_seed(seed, st.step, k, NOISE_KEY))
            dataset.generator = gen_data
            x_1 = dataset.get_batch(idx[k * chunk_size:(k + 1) * chunk_size]).to(device, non_blocking=True)
            sync = contextlib.nullcontext() if j == len(mine) - 1 or not denv.distributed else net.no_sync()
            with sync, torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                      enabled=on_gpu and amp_dtype is not None):
                loss = objective(net, x_1, gen_noise).float().mean()
                scaler.scale(loss / len(mine)).backward()
            total += loss.detach()
        if clip > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        ema.update(model)
        pending.append(total / len(mine))
        st.step += 1
        step = st.step
        if step % log_every == 0 or step == steps or step % ckpt_every == 0:
            agreed_stop = flush_logs(agree=denv.distributed)
        if step % ckpt_every == 0 and step < steps and not agreed_stop:  # (a stop saves it at the top)
            save("last.pt")
        if snapshot_every and step % snapshot_every == 0 and step < steps:
            save_snapshot()
    flush_logs()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    final = None
    if not preempted and save_final:
        final = save("checkpoint.pt")
        if final is not None:
            link_or_copy(final, run_dir / "last.pt")
            if snapshot_every and st.step % snapshot_every == 0:  # a hard link: no extra disk
                link_or_copy(final, run_dir / "checkpoints" / f"step_{st.step}.pt")
    progress.close()
    done = st.step - start_step
    return TrainResult(step=st.step, final_loss=sum(st.loss_tail) / max(len(st.loss_tail), 1),
                       first_loss=first_loss,
                       samples_per_s=done * sampler.batch_size / max(seconds, 1e-9), seconds=seconds,
                       cpu_seconds=cpu_seconds,
                       preempted=preempted, checkpoint=final)
