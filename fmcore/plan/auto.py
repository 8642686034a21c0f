"""``runtime: auto`` and ``shards: auto``: SLURM time limits and shard counts from the cost model.

``resolve_auto(params)`` returns the params with every ``auto`` replaced by a number, once,
when the workflow loads them (``workflow/rules/common.smk``) and when ``python -m fmcore.plan``
prints its table. Per job, from the device profile ``plan.profile`` scaled by
``1 / plan.assume_speedup`` (``fmcore.plan.costs``), the paper's NFE (else ``plan.nfe``) and the
safety factor k = ``plan.safety_factor``, in minutes:

* training:    runtime = clip(ceil(k x W_train / 60) + lead + OVERHEAD, MIN, max_runtime), with
  W_train the training wall time and lead = ``signal_lead_s`` / 60; a job capped at
  ``max_runtime`` is resubmitted from ``last.pt`` (the plan's "submissions");
* evaluation:  shards  S = the smallest S with k x E_shardable / S + OVERHEAD <= limit, with
  limit = the evaluate stage's ``runtime`` when it is a number, else its ``max_runtime``;
  runtime = clip(ceil(k x max(E_shardable / S, E_merge) / 60) + OVERHEAD, MIN, max_runtime),
  where E_shardable is every part but the figures (what ``--shard`` splits) and E_merge the
  figures (run by the merge); shards and merge share the evaluate stage's resources;
* stages without a cost model (``prepare``, ``reference``: one job per dataset) get
  ``max_runtime``.

The NFE come from files only (not from MLflow), so the DAG does not change with what the
tracking server holds when Snakemake plans it. The numbers are estimates: the plan's table
shows them beside the limits (docs/workflow.md, "Before you submit").
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

from fmcore.config import ParamsError, deep_merge, resolve_job, seeds_of, stage_resources, uses_auto
from fmcore.plan.costs import OVERHEAD_MIN, JobPlan, plan_job, profile_entry, shards_needed
from fmcore.plan.nfe import ExpectedNFE, expected_nfe
from fmcore.plan.profile import load_profile

__all__ = ["AUTO", "MIN_RUNTIME", "OVERHEAD_MIN", "resolve_auto"]

AUTO = "auto"
MIN_RUNTIME = 10
DEFAULTS = {"assume_speedup": 1.0, "safety_factor": 1.5, "ddp_efficiency": 0.9, "nfe": 100.0}


def _cap(res: dict, section: dict) -> int:
    """The limit an ``auto`` runtime falls back to: the stage section's ``max_runtime``, else the base's."""
    return int(section.get("max_runtime", res.get("max_runtime", 60)))


def _minutes(seconds: float, cap: int, extra: float = 0.0) -> int:
    return int(min(cap, max(MIN_RUNTIME, math.ceil(seconds / 60 + extra + OVERHEAD_MIN))))


def _job_plan(job: dict, nfe_table: dict, plan_cfg: dict, profile: dict, source: str) -> JobPlan:
    assumed = ExpectedNFE(plan_cfg["nfe"], plan_cfg["nfe"], "plan.nfe (assumed)")
    nfe = nfe_table.get((job["dataset"], job["method"]), assumed)
    job = copy.deepcopy(job)  # placeholders for what is being decided (plan_job needs numbers)
    for section in (job["resources"], job["resources"].get("evaluate") or {}):
        if section.get("runtime") == AUTO:
            section["runtime"] = _cap(job["resources"], section)
    if job["evaluate"].get("shards") == AUTO:
        job["evaluate"]["shards"] = 1
    return plan_job(job, profile_entry(profile, job, source), nfe, speedup=plan_cfg["assume_speedup"],
                    ddp_efficiency=plan_cfg["ddp_efficiency"], safety_factor=plan_cfg["safety_factor"])


def _resolve_job(params: dict, key: str, nfe_table: dict, plan_cfg: dict, profile: dict, source: str) -> dict:
    """The ``resources`` / ``evaluate`` overrides that replace ``auto`` for one job."""
    spec = params["jobs"][key]
    # resources and evaluate sections are the same for every seed of a job: its first seed's
    job = resolve_job(params, spec["dataset"], spec["method"],
                      seed=seeds_of(params, spec["dataset"], spec["method"])[0])
    res, ev = job["resources"], job["evaluate"]
    train_res, eval_res = res, stage_resources(res, "evaluate")
    if AUTO not in (train_res.get("runtime"), eval_res.get("runtime"), ev.get("shards")):
        return {}
    plan = _job_plan(job, nfe_table, plan_cfg, profile, source)
    k = plan_cfg["safety_factor"]
    out: dict = {"resources": {}, "evaluate": {}}
    if train_res.get("runtime") == AUTO:
        lead = int(train_res.get("signal_lead_s", 0)) / 60
        out["resources"]["runtime"] = _minutes(k * plan.train_wall_s, int(train_res["max_runtime"]), lead)
    merge_s = plan.eval_parts_s.get("figures", 0.0)
    shardable_s = plan.eval_gpu_s - merge_s
    shards = ev.get("shards", 1)
    if shards == AUTO:
        limit = eval_res["runtime"] if eval_res.get("runtime") != AUTO else eval_res["max_runtime"]
        shards = shards_needed(shardable_s, int(limit), k)
        out["evaluate"]["shards"] = shards
    if eval_res.get("runtime") == AUTO:
        per_job_s = k * max(shardable_s / int(shards), merge_s)
        out["resources"]["evaluate"] = {"runtime": _minutes(per_job_s, int(eval_res["max_runtime"]))}
    return {part: values for part, values in out.items() if values}


def _plan_config(params: dict, source: str) -> tuple[dict, dict, str]:
    cfg = {**DEFAULTS, **(params.get("plan") or {})}
    if "profile" not in cfg:
        raise ParamsError(f"{source}: runtime/shards 'auto' needs plan.profile: a device profile written by "
                          "`python -m fmcore.plan calibrate --params <params>` on the GPU the jobs run on")
    path = Path(cfg["profile"])
    if not path.is_file():
        raise ParamsError(f"{source}: plan.profile={cfg['profile']!r}: no such file; run `python -m fmcore.plan "
                          "calibrate --params <params>` on that GPU (it writes benchmarks/profiles/<device>.json)")
    return cfg, load_profile(path), str(path)


def resolve_auto(params: dict, source: str = "params") -> dict:
    """``params`` with every ``runtime: auto`` / ``shards: auto`` replaced by the planner's number.

    Raises:
        ParamsError: no or a missing ``plan.profile``; ``fmcore.plan.costs.PlanError``: the profile
            has no measurement of a job's network.
    """
    if not uses_auto(params):
        return params
    plan_cfg, profile, path = _plan_config(params, source)
    out = copy.deepcopy(params)
    nfe_table = expected_nfe(params["experiment"], use_mlflow=False)  # the paper's Table 1, read once
    for key in params["jobs"]:
        for part, values in _resolve_job(params, key, nfe_table, plan_cfg, profile, path).items():
            out["jobs"][key][part] = deep_merge(out["jobs"][key].get(part) or {}, values)
    for res in [*out["resources"].values(), *(j.get("resources") or {} for j in out["jobs"].values())]:
        for section in (res, res.get("prepare"), res.get("evaluate")):  # stages without a cost model
            if section and section.get("runtime") == AUTO:
                section["runtime"] = _cap(res, section)
    return out
