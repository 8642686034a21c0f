"""What a grid will cost, from a device profile: GPU-hours, wall time, submissions, shards, disk.

Per job of ``params`` (W = nodes x tasks per node training processes, one GPU each):

* a call of the network on a batch of B samples costs ``c + B x s`` seconds (the profile's
  ``<q>_call_s`` and ``<q>_s``, ``fmcore.plan.profile``), so n samples in batches of B cost
  C(n, B) = ceil(n / B) x c + n x s per function evaluation;
* training GPU-seconds  = steps x C_train(B, B / m) x m / e(W) summed over the m =
  ``micro_batches`` (default W) chunks of each update, i.e. steps x (m x c_t + B x s_t) / e(W),
  wall = that / W, with e(W) = ``ddp_efficiency`` for W > 1 (an assumption, stated in the
  output) and 1 for W = 1;
* evaluation GPU-seconds (one GPU; ``shards`` split it), with F / D the forward /
  Hutchinson-divergence costs C(., .), N = expected sampling NFE, N_L = expected NLL NFE, and
  N_ref, N_dt, N_traj, N_snap the NFE at the sweep reference's / during_training's /
  trajectories' / snapshots' own tolerances where a run measured them (else N;
  ``fmcore.plan.nfe.ExpectedNFE``):
    nll             dequant_samples x N_L x D_h(n, nll.batch_size)   (D_h = F + probes x (D - F)
                                                  Hutchinson; dim x D for the exact trace)
    quality         N x F(n_samples, quality.batch_size)
    sweep           (sum of the NFE budgets over solvers + N_ref) x F(n_samples, n_samples)
    during_training checkpoints x (N_dt x F(n_samples, quality.batch_size)
                                   + N_L x (N_dt / N) x D_h(nll_n, nll_n))
    figures         N_traj x F(trajectories.n, .n) + N_snap x F(snapshots.n, .n);
* submissions = ceil(wall / usable limit): the SLURM ``runtime`` minus ``signal_lead_s``
  (training: each requeue resumes from ``last.pt``);
* suggested shards = ``shards_needed``: the smallest S with k x (evaluation GPU-seconds but the
  figures, which the merge draws) / S + 5 minutes of start-up <= the evaluate stage's limit,
  k = ``safety_factor`` (1.5; the rule ``shards: auto`` applies);
* disk at its peak, as ``benchmarks/checkpoint_disk.py`` counts it: two states (16.21 B/param
  each: ``checkpoint.pt`` and a ``last.pt`` being rewritten; once finished ``last.pt`` is a hard
  link) and the Fig. 5 weights-only snapshots (4.05 B/param each), one per
  ``during_training.every`` steps less the last (a hard link to ``checkpoint.pt``).

A profile measured on another device is scaled by ``1 / speedup`` (``--assume-speedup``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fmcore.config import stage_resources
from fmcore.plan.nfe import ExpectedNFE
from fmcore.plan.profile import model_key

__all__ = ["OVERHEAD_MIN", "STATE_BYTES_PER_PARAM", "WEIGHTS_BYTES_PER_PARAM", "JobPlan", "PlanError", "plan_job",
           "shards_needed"]

STATE_BYTES_PER_PARAM = 16.21  # benchmarks/checkpoint_disk.py (measured with the real train_loop)
WEIGHTS_BYTES_PER_PARAM = 4.05
OVERHEAD_MIN = 5  # start-up per submission: imports, data, device, checkpoint load


def shards_needed(shardable_s: float, limit_min: float, safety_factor: float) -> int:
    """The fewest shards S with ``safety_factor x shardable_s / S + OVERHEAD_MIN <= limit_min``."""
    usable_s = max(limit_min - OVERHEAD_MIN, 1) * 60
    return max(1, math.ceil(safety_factor * shardable_s / usable_s))


class PlanError(ValueError):
    """The plan cannot be made (no profile entry for a model, bad numbers); one line."""


@dataclass
class JobPlan:
    """The estimate for one training run (``method`` holds the run name: ``<method>[/seed<k>]``);
    seconds are device seconds unless ``wall``."""

    dataset: str
    method: str
    gpus: int
    train_gpu_s: float
    train_wall_s: float
    train_submissions: int
    train_limit_s: float  # SLURM runtime of one submission
    eval_parts_s: dict[str, float]
    eval_gpu_s: float
    shards: int
    suggested_shards: int
    eval_wall_per_shard_s: float
    eval_limit_s: float
    disk_bytes: float
    nfe: float
    nll_nfe: float
    nfe_source: str

    def as_dict(self) -> dict:
        return asdict(self)


def _world(res: dict) -> int:
    return int(res.get("nodes", 1)) * int(res.get("tasks_per_node", max(int(res.get("gpus_per_node", 0)), 1)))


def _usable_s(res: dict, lead_s: int = 0) -> float:
    return max(int(res.get("runtime", 60)) * 60 - lead_s, 60)


def plan_job(job: dict, entry: dict, expected: ExpectedNFE, speedup: float = 1.0,
             ddp_efficiency: float = 0.9, safety_factor: float = 1.5) -> JobPlan:
    """Estimate one resolved job (``fmcore.config.resolve_job``) from its profile ``entry``."""
    if speedup <= 0 or not 0 < ddp_efficiency <= 1:
        raise PlanError(f"speed-up {speedup} and DDP efficiency {ddp_efficiency}: expected > 0 and in (0, 1]")
    tr, ev, res = job["train"], job["evaluate"], job["resources"]

    def cost(q: str, n: int, batch: int) -> float:  # C(n, B) of one NFE, on the target device
        return (math.ceil(n / max(batch, 1)) * float(entry.get(f"{q}_call_s", 0.0)) + n * float(entry[f"{q}_s"])) / speedup

    world = _world(res)
    chunks = int(tr.get("micro_batches", world))
    batch = int(tr["batch_size"])
    train_gpu_s = int(tr["steps"]) * chunks * cost("train", batch // chunks, batch // chunks)
    train_gpu_s /= ddp_efficiency if world > 1 else 1.0
    train_wall_s = train_gpu_s / world
    lead = int(res.get("signal_lead_s", 0))
    train_submissions = max(1, math.ceil(train_wall_s / _usable_s(res, lead)))

    nll, quality = ev["nll"], ev["quality"]
    dim = math.prod(entry["shape"])

    def div_cost(n: int, b: int) -> float:  # one NFE of the NLL's augmented ODE
        if nll.get("exact", True):
            return dim * cost("divergence", n, b)
        return cost("forward", n, b) + int(nll.get("hutchinson_samples", 1)) * (
            cost("divergence", n, b) - cost("forward", n, b))

    deq = int(nll.get("dequant_samples", 1)) if len(entry["shape"]) == 3 else 1
    nfe, nll_nfe = expected.sampling, expected.nll
    n_nll = int(nll["n"])
    parts = {"nll": deq * nll_nfe * div_cost(n_nll, int(nll.get("batch_size", n_nll))),
             "quality": nfe * cost("forward", int(quality["n_samples"]), int(quality["batch_size"]))}
    sw = ev["sweep"]
    budgets = len(sw["solvers"]) * sum(int(b) for b in sw["nfe"])
    n_sw = int(sw["n_samples"])
    parts["sweep"] = (budgets + expected.of("sweep_reference")) * cost("forward", n_sw, n_sw)
    dt = ev.get("during_training")
    if dt:
        checkpoints = int(tr["steps"]) // int(dt["every"])
        n_dt, nll_n = expected.of("during_training"), int(dt["nll_n"])
        per_ckpt = n_dt * cost("forward", int(dt["n_samples"]), int(quality["batch_size"]))
        if nll_n:
            per_ckpt += nll_nfe * (n_dt / nfe) * div_cost(nll_n, nll_n)
        parts["during_training"] = checkpoints * per_ckpt
    parts["figures"] = sum(expected.of(k) * cost("forward", n, n) for k in ("trajectories", "snapshots")
                           if (n := int((ev.get(k) or {}).get("n", 0))))
    eval_gpu_s = sum(parts.values())
    eval_res = stage_resources(res, "evaluate")
    limit = _usable_s(eval_res)
    shards = int(ev.get("shards", 1))
    suggested = shards_needed(eval_gpu_s - parts["figures"], int(eval_res.get("runtime", 60)), safety_factor)
    steps, every = int(tr["steps"]), int(dt["every"]) if dt else 0  # disk
    n_snapshots = steps // every - (1 if steps % every == 0 else 0) if dt else 0
    disk = entry["params"] * (2 * STATE_BYTES_PER_PARAM + n_snapshots * WEIGHTS_BYTES_PER_PARAM)
    # the run's name: "<method>", or "<method>/seed<k>" for a job with several seeds (fmcore.config.runs)
    return JobPlan(job["dataset"], job.get("run", job["method"]), world, train_gpu_s, train_wall_s, train_submissions,
                   int(res.get("runtime", 60)) * 60.0, parts,
                   eval_gpu_s, shards, suggested, eval_gpu_s / shards, limit, disk, nfe, nll_nfe, expected.source)


def profile_entry(profile: dict, job: dict, profile_name: str) -> dict:
    """The profile's measurement of the job's network.

    Raises:
        PlanError: the network was not calibrated on that device.
    """
    entry = profile["models"].get(model_key(job["model"]))
    if entry is None:
        raise PlanError(f"{profile_name}: no measurement of the {job['dataset']} model (models.{job['dataset']}); "
                        f"run `python -m fmcore.plan calibrate --params <params>` on that device")
    return entry
