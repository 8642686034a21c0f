"""Run the evaluation parts of one trained job, cache each result, write metrics.json, log MLflow.

Parts (``--only`` names): ``nll``, ``quality`` (``nfe`` is computed with it: the dopri5
NFE of the quality samples), ``sweep``, ``during_training``, ``trajectories``, ``snapshots``.
The last three (figure data) are optional: a dataset whose ``evaluate`` section has no such
key skips the part (e.g. ``snapshots`` feed only the 2D Fig. 4).
Each finished part is cached as ``<eval_dir>/<part>.json`` (metrics, history, info and a
fingerprint of everything it depends on: checkpoint sha256, its params sections, seed,
reference files) plus ``<eval_dir>/<part>.npz``; a rerun reuses a part whose fingerprint
matches and recomputes it otherwise. Inside a part, batches are cached under
``<eval_dir>/partial/`` until the part is done.

A part that cannot be computed (an ODE solve fails: dopri5 step-size underflow on a stiff
field, non-finite samples; or no periodic checkpoints for ``during_training``) is recorded
under ``failed`` in metrics.json and the tag ``fmrepro.failed_parts``,
is not cached, and the other parts go on; ``--strict`` turns that into exit status 1.

Every invocation then writes ``<eval_dir>/metrics.json`` (DVC metrics) from all valid
cached parts and logs them as one new MLflow run ``eval/<dataset>/<method>`` (child of the
training run; tags and metric names as docs/CONTRACTS.md), so the latest evaluation run
of a job always holds the union of its finished parts.

Sharded (``evaluate.<dataset>.shards`` = S > 1; ``--shard s/S``): shard s computes only its
batches of the per-sample parts (``SHARDED``: NLL test images, quality samples, sweep runs,
during-training checkpoints; :class:`fmcore.evaluation.io.BatchCache`) into the shared
``partial/`` cache and writes ``eval/shards/shard_<s>_of_<S>.json``: no part result, no
metrics.json, no MLflow run. The unsharded invocation after all shards (the merge) finds
every batch on disk and writes exactly what an unsharded run writes, and the one MLflow run.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch


from fmcore.config import resolve_job
from fmcore.data import dataset_hash, load_split
from fmcore.evaluation.context import EvalContext, PartFailure, PartResult, resolve_device
from fmcore.evaluation.during_training import run_during_training
from fmcore.evaluation.io import load_npz
from fmcore.io import atomic_savez, atomic_write_json
from fmcore.evaluation.model import load_eval_model
from fmcore.evaluation.paths_data import run_snapshots, run_trajectories
from fmcore.evaluation.quality import build_quality
from fmcore.evaluation.reference import reference_dir
from fmcore.evaluation.scores import nll_metrics, quality_metrics
from fmcore.evaluation.sweep import run_sweep
from fmcore.metrics.fid import FeatureNetwork

__all__ = ["PARTS", "evaluate_job", "parse_only"]

PARTS = ("nll", "quality", "sweep", "during_training", "trajectories", "snapshots")
_ALIASES = {"nfe": "quality"}
_DEPENDS = {  # params sections of evaluate.<ds> each part depends on
    "nll": ("nll",), "quality": ("quality", "nfe"), "sweep": ("sweep", "quality"),
    "during_training": ("during_training", "nll", "quality", "nfe"),
    "trajectories": ("trajectories", "nfe"), "snapshots": ("snapshots", "nfe"),
}  # fmt: skip
_USES_QUALITY = ("quality", "sweep", "during_training")
OPTIONAL = ("during_training", "trajectories", "snapshots")  # run only where configured
SHARDED = ("nll", "quality", "sweep", "during_training")  # per-sample work split by --shard (the rest: merge)


def parse_only(text: str | None) -> list[str]:
    """``"nll,nfe"`` -> ``["nll", "quality"]``; None -> all parts.

    Raises:
        ValueError: an unknown part name.
    """
    if not text:
        return list(PARTS)
    out = []
    for name in (s.strip() for s in text.split(",") if s.strip()):
        name = _ALIASES.get(name, name)
        if name not in PARTS:
            raise ValueError(f"--only: unknown part {name!r}, expected some of {', '.join(PARTS + ('nfe',))}")
        if name not in out:
            out.append(name)
    return out


def _compute(part: str, ctx: EvalContext, fp: dict,
             shard: tuple[int, int] | None = None) -> PartResult | None:
    """One part's result, or None for a shard (its batches are on disk)."""
    partial = ctx.eval_dir / "partial"
    if part == "nll":
        out = nll_metrics(ctx, ctx.model, ctx.cfg["nll"], int(ctx.cfg["nll"]["n"]), partial / "nll", fp,
                          shard=shard)
        return None if out is None else PartResult(metrics=out[0], arrays=out[1])
    if part == "quality":
        q = ctx.cfg["quality"]
        out = quality_metrics(ctx, ctx.model, ctx.quality, int(q["n_samples"]), int(q["batch_size"]),
                              partial / "quality", fp, shard=shard)  # fmt: skip
        return None if out is None else PartResult(metrics=out[0], arrays=out[1])
    if part == "sweep":
        return run_sweep(ctx, fp, shard=shard)
    if part == "during_training":
        return run_during_training(ctx, fp, shard=shard)
    return run_trajectories(ctx) if part == "trajectories" else run_snapshots(ctx)


def _load_part(eval_dir: Path, part: str, fp: dict) -> PartResult | None:
    f = eval_dir / f"{part}.json"
    try:
        cached = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if cached.get("fingerprint") != json.loads(json.dumps(fp)):
        return None
    npz = eval_dir / f"{part}.npz"
    arrays = load_npz(npz) if npz.is_file() else {}
    return PartResult(cached["metrics"], [tuple(h) for h in cached["history"]], arrays, cached["info"])


def _save_part(eval_dir: Path, part: str, fp: dict, res: PartResult) -> None:
    if res.arrays:
        atomic_savez(eval_dir / f"{part}.npz", **res.arrays)
    atomic_write_json(eval_dir / f"{part}.json", {"fingerprint": fp, "metrics": res.metrics,
                                                  "history": res.history, "info": res.info})  # fmt: skip


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _first_line(text: str, limit: int = 300) -> str:
    """First non-empty line of an error message, cut to ``limit`` characters (an MLflow tag value)."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "no message")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _log_mlflow(job: dict, ctx: EvalContext, results: dict[str, PartResult], summary: dict) -> str | None:
    from fmcore.tracking import git_commit, start_run

    tags = {"fmrepro.stage": "evaluate", "fmrepro.dataset": job["dataset"], "fmrepro.method": job["method"],
            "fmrepro.seed": str(job["seed"]),
            "fmrepro.train_run_id": ctx.model.train_run_id or "unknown",
            "fmrepro.quality_metric": summary["quality_metric"],
            "fmrepro.stand_in": str(summary["stand_in"]).lower(),
            "fmrepro.checkpoint": str(ctx.model.checkpoint), "fmrepro.checkpoint_step": str(ctx.model.step),
            "fmrepro.checkpoint_sha256": ctx.model.checkpoint_sha256,
            "fmrepro.git_commit": git_commit(), "fmrepro.host": platform.node(),
            "fmrepro.device": _device_name(ctx.model.device),
            "fmrepro.parts": ",".join(results),
            "fmrepro.failed_parts": ",".join(summary["failed"])}  # fmt: skip
    for part, why in summary["failed"].items():  # the report's footnote for the part's empty cells
        tags[f"fmrepro.failed.{part}"] = _first_line(why)
    tracker = start_run(job["experiment"], f"eval/{job['dataset']}/{job['run']}", tags=tags,
                        params={"evaluate": job["evaluate"]}, parent_run_id=ctx.model.train_run_id,
                        spool_path=ctx.eval_dir / "mlflow_spool.jsonl")  # fmt: skip
    tracker.log_metrics(summary["metrics"], step=0)
    for res in results.values():
        by_step: dict[int, dict[str, float]] = {}
        for name, step, value in res.history:
            by_step.setdefault(int(step), {})[name] = value
        for step, values in sorted(by_step.items()):
            tracker.log_metrics(values, step=step)
    for part, res in results.items():
        if res.arrays:
            tracker.log_artifact(ctx.eval_dir / f"{part}.npz")
    tracker.log_artifact(ctx.eval_dir / "metrics.json")
    tracker.flush(timeout=60.0)
    run_id = tracker.run_id
    tracker.close()
    return run_id


def evaluate_job(
    params: dict, dataset: str, method: str, only: list[str] | None = None,
    feature_network: FeatureNetwork | None = None, log: Callable[[str], None] = print,
    shard: tuple[int, int] | None = None, seed: int | None = None,
) -> dict:
    """Evaluate the final checkpoint of one job; returns the content of ``metrics.json``
    (with ``shard=(s, S)``: the content of the shard's marker file; module docstring).

    Raises:
        ValueError: bad params, a missing checkpoint / reference / Inception file, bad data,
            a shard index outside ``0 .. S-1``.
    """
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"--shard {shard[0]}/{shard[1]}: expected s/S with 0 <= s < S")
    job = resolve_job(params, dataset, method, seed=seed)
    run_dir = Path(job["paths"]["run_dir"])
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.is_file():
        raise ValueError(f"{ckpt}: no final checkpoint; train first with `python -m fmcore.train --params "
                         f"<params> --dataset {dataset} --method {method}`")  # fmt: skip
    cfg = job["evaluate"]
    device = resolve_device(cfg.get("device"))
    model = load_eval_model(job, ckpt, use_ema=bool(cfg.get("ema", True)), device=device)
    eval_dir = run_dir / "eval"
    ref_dir = reference_dir(job)
    ref_json = ref_dir / "reference.json"
    ref_info = json.loads(ref_json.read_text()) if ref_json.is_file() else None
    test = load_split(job["paths"]["data_dir"], "test")
    ctx = EvalContext(job=job, model=model, quality=None, test=test, eval_dir=eval_dir)
    sizes = {"nll.n": cfg["nll"]["n"], "during_training.nll_n": cfg.get("during_training", {}).get("nll_n", 0)}
    for key, n in sizes.items():
        if int(n) > len(test):  # would silently evaluate fewer points than requested and logged
            raise ValueError(f"evaluate.{dataset}.{key}={n}: the test split has {len(test)} points; expected at "
                             f"most {len(test)}")
    base = {"checkpoint": model.checkpoint_sha256, "seed": ctx.seed,
            "data_hash": dataset_hash(job["paths"]["data_dir"]),
            "reference": (ref_info or {}).get("fingerprint")}  # fmt: skip
    fps = {p: {**base, "part": p, "sections": {s: cfg.get(s) for s in _DEPENDS[p]}} for p in PARTS}
    wanted = [p for p in only or PARTS if p not in OPTIONAL or p in cfg]
    if shard is not None:
        wanted = [p for p in wanted if p in SHARDED]
    results: dict[str, PartResult] = {}
    failed: dict[str, str] = {}
    for part in PARTS:
        res = _load_part(eval_dir, part, fps[part])
        if res is None and part in wanted:
            if part in _USES_QUALITY and ctx.quality is None:
                if ref_info is None:
                    raise ValueError(f"{ref_dir / 'reference.json'}: missing; run `python -m fmcore.evaluate "
                                     f"reference --params <params> --dataset {dataset}` first")  # fmt: skip
                feat_device = device if feature_network is None else torch.device("cpu")  # injected: CPU
                ctx.quality = build_quality(cfg["quality"], dataset, ref_dir, feature_network, feat_device)
            log(f"evaluate {dataset}/{method}: {part} ...")
            start = time.perf_counter()
            try:
                res = _compute(part, ctx, fps[part], shard=shard)
            except PartFailure as exc:  # recorded, not cached: a rerun tries again
                failed[part] = str(exc)
                log(f"evaluate {dataset}/{method}: {part} FAILED: {exc}")
                continue
            if res is None:  # a shard: its batches are in partial/, the merge finishes the part
                continue
            res.info["seconds"] = round(time.perf_counter() - start, 2)
            _save_part(eval_dir, part, fps[part], res)
        if res is not None:
            results[part] = res
    if shard is not None:
        marker = {"shard": shard[0], "shards": shard[1], "parts": [p for p in wanted if p not in failed],
                  "failed": failed, "checkpoint_sha256": model.checkpoint_sha256}
        atomic_write_json(eval_dir / "shards" / f"shard_{shard[0]}_of_{shard[1]}.json", marker)
        return marker
    metric = cfg["quality"]["metric"]
    metrics: dict[str, float] = {}
    for res in results.values():
        metrics.update(res.metrics)
    if ref_info:
        for k in ("classifier_test_accuracy", "w2_2d_floor", "fd_2d_floor", "fd_digits_test_split"):
            if k in ref_info:
                metrics[f"reference/{k}"] = float(ref_info[k])
    summary = {"dataset": dataset, "method": method, "experiment": job["experiment"],
               "checkpoint_step": model.step, "quality_metric": metric, "stand_in": metric != "fid",
               "parts": sorted(results), "failed": failed, "metrics": metrics,
               "info": {p: r.info for p, r in results.items() if r.info}}  # fmt: skip
    atomic_write_json(eval_dir / "metrics.json", summary)
    summary["mlflow_run_id"] = _log_mlflow(job, ctx, results, summary)
    atomic_write_json(eval_dir / "metrics.json", summary)
    return summary
