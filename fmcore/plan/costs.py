"""What a grid will cost, from a device profile: GPU-hours, wall time, submissions, shards, disk.

Per job of ``params`` (W = nodes x tasks per node training processes, one GPU each):

* training GPU-seconds  = steps x batch_size x train_s / e(W), wall = that / W, with
  e(W) = ``ddp_efficiency`` for W > 1 (an assumption, stated in the output) and 1 for W = 1;
* evaluation GPU-seconds (one GPU; ``shards`` split it), with F = forward_s and
  D = divergence_s of one sample (one NFE), N = expected sampling NFE, N_L = expected NLL NFE:
    nll             n x dequant_samples x N_L x D_h   (D_h = F + probes x (D - F) Hutchinson,
                                                       dim x D for the exact trace)
    quality         n_samples x N x F
    sweep           n_samples x (sum of the NFE budgets over solvers + N at the reference tolerance) x F
    during_training checkpoints x (n_samples x N x F + nll_n x N_L x D_h)
    figures         (trajectories.n + snapshots.n) x N x F;
* submissions = ceil(wall / usable limit): the SLURM ``runtime`` minus ``signal_lead_s``
  (training: each requeue resumes from ``last.pt``);
* suggested shards = the smallest S with evaluation GPU-seconds / S <= 80 % of its limit;
* disk: a state (``last.pt``; ``checkpoint.pt`` is a hard link) is 16.21 B/param and a
  periodic weights-only checkpoint 4.05 B/param (``benchmarks/checkpoint_disk.py``).

A profile measured on another device is scaled by ``1 / speedup`` (``--assume-speedup``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fmcore.plan.profile import model_key

__all__ = ["STATE_BYTES_PER_PARAM", "WEIGHTS_BYTES_PER_PARAM", "JobPlan", "PlanError", "plan_job"]

STATE_BYTES_PER_PARAM = 16.21  # benchmarks/checkpoint_disk.py (measured with the real train_loop)
WEIGHTS_BYTES_PER_PARAM = 4.05
SHARD_FILL = 0.8  # a shard should use at most this fraction of its time limit


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


def plan_job(job: dict, entry: dict, nfe: float, nll_nfe: float, nfe_source: str, speedup: float = 1.0,
             ddp_efficiency: float = 0.9) -> JobPlan:
    """Estimate one resolved job (``fmcore.config.resolve_job``) from its profile ``entry``."""
    if speedup <= 0 or not 0 < ddp_efficiency <= 1:
        raise PlanError(f"speed-up {speedup} and DDP efficiency {ddp_efficiency}: expected > 0 and in (0, 1]")
    tr, ev, res = job["train"], job["evaluate"], job["resources"]
    f, d, t = (float(entry[k]) / speedup for k in ("forward_s", "divergence_s", "train_s"))
    world = _world(res)
    train_gpu_s = int(tr["steps"]) * int(tr["batch_size"]) * t / (ddp_efficiency if world > 1 else 1.0)
    train_wall_s = train_gpu_s / world
    lead = int(res.get("signal_lead_s", 0))
    train_submissions = max(1, math.ceil(train_wall_s / _usable_s(res, lead)))

    nll = ev["nll"]
    dim = math.prod(entry["shape"])
    div_cost = dim * d if nll.get("exact", True) else f + int(nll.get("hutchinson_samples", 1)) * (d - f)
    deq = int(nll.get("dequant_samples", 1)) if len(entry["shape"]) == 3 else 1
    parts = {"nll": int(nll["n"]) * deq * nll_nfe * div_cost,
             "quality": int(ev["quality"]["n_samples"]) * nfe * f}
    sw = ev["sweep"]
    parts["sweep"] = int(sw["n_samples"]) * (len(sw["solvers"]) * sum(int(b) for b in sw["nfe"]) + nfe) * f
    dt = ev.get("during_training")
    if dt:
        checkpoints = int(tr["steps"]) // int(dt["every"])
        parts["during_training"] = checkpoints * (int(dt["n_samples"]) * nfe * f + int(dt["nll_n"]) * nll_nfe * div_cost)
    figures = sum(int((ev.get(k) or {}).get("n", 0)) for k in ("trajectories", "snapshots"))
    parts["figures"] = figures * nfe * f
    eval_gpu_s = sum(parts.values())
    eval_res = {**res, **(res.get("evaluate") or {})}
    limit = _usable_s(eval_res)
    shards = int(ev.get("shards", 1))
    suggested = max(1, math.ceil(eval_gpu_s / (SHARD_FILL * limit)))
    n_snapshots = int(tr["steps"]) // int(dt["every"]) if dt else 0
    disk = entry["params"] * (STATE_BYTES_PER_PARAM + n_snapshots * WEIGHTS_BYTES_PER_PARAM)
    # the run's name: "<method>", or "<method>/seed<k>" for a job with several seeds (fmcore.config.runs)
    return JobPlan(job["dataset"], job.get("run", job["method"]), world, train_gpu_s, train_wall_s, train_submissions, parts,
                   eval_gpu_s, shards, suggested, eval_gpu_s / shards, limit, disk, nfe, nll_nfe, nfe_source)


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
