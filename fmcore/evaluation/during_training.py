"""Quality and NLL of the periodic checkpoints against the training step (data of Fig. 5).

Checkpoints ``<run_dir>/checkpoints/step_<N>.pt`` with N a multiple of
``during_training.every`` and N <= the final checkpoint's step are evaluated with their EMA
weights: the quality metric of ``during_training.n_samples`` dopri5 samples and the NLL of
``during_training.nll_n`` test points (bits/dim for images, nats for 2D; exact or Hutchinson
as in the ``nll`` section unless ``during_training.nll_exact`` overrides it; ``nll_n: 0``
draws only the quality curve). Solver tolerances: ``during_training.atol/rtol`` where given
(a missing one comes from the ``nfe`` section for sampling and from the ``nll`` section for
the NLL), else ``nfe``'s and ``nll``'s. One cached result per checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fmcore.evaluation.context import EvalContext, PartFailure, PartResult
from fmcore.evaluation.io import BatchCache
from fmcore.evaluation.model import load_eval_model
from fmcore.evaluation.scores import nll_metrics, quality_metrics

__all__ = ["periodic_checkpoints", "run_during_training"]

_STEP = re.compile(r"^step_(\d+)\.pt$")


def periodic_checkpoints(run_dir: str | Path, every: int) -> list[tuple[int, Path]]:
    """(step, path) of the periodic checkpoints whose step is a multiple of ``every``, by step."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    for p in folder.glob("step_*.pt") if folder.is_dir() else []:
        m = _STEP.match(p.name)
        if m and int(m.group(1)) % every == 0:
            found.append((int(m.group(1)), p))
    return sorted(found)


def run_during_training(ctx: EvalContext, fingerprint: dict,
                        shard: tuple[int, int] | None = None) -> PartResult | None:
    """Evaluate every selected periodic checkpoint (see module docstring); with ``shard=(s, S)``
    only the checkpoints i with i mod S = s, and None (the merge reads them all)."""
    cfg = ctx.cfg["during_training"]
    ckpts = [(s, p) for s, p in periodic_checkpoints(ctx.job["paths"]["run_dir"], int(cfg["every"]))
             if s <= ctx.model.step]  # stale files of a longer earlier run are not this run's history
    if not ckpts:
        raise PartFailure(
            f"{Path(ctx.job['paths']['run_dir']) / 'checkpoints'}: no step_<N>.pt with N a multiple of "
            f"evaluate.{ctx.job['dataset']}.during_training.every={cfg['every']}"
        )
    nll_cfg = dict(ctx.cfg["nll"])
    if "nll_exact" in cfg:
        nll_cfg["exact"] = bool(cfg["nll_exact"])
    tol = ctx.tolerances("during_training")  # sampling: falls back to the nfe section
    if "atol" in cfg or "rtol" in cfg:
        nll_cfg.update(ctx.tolerances("during_training", fallback="nll"))
    nll_key = "nll_bpd" if ctx.is_image else "nll_nats"
    partial = ctx.eval_dir / "partial"

    def one(i: int) -> dict[str, np.ndarray]:
        step, path = ckpts[i]
        model = load_eval_model(ctx.job, path, use_ema=bool(ctx.cfg.get("ema", True)),
                                device=ctx.model.device)
        fp = {**fingerprint, "checkpoint": model.checkpoint_sha256}
        q, _ = quality_metrics(ctx, model, ctx.quality, int(cfg["n_samples"]),
                               int(ctx.cfg["quality"]["batch_size"]), partial / f"dt_quality_{step}", fp,
                               stream="during_training", tol=tol)  # fmt: skip
        nll_n, nll = int(cfg["nll_n"]), {nll_key: float("nan")}
        if nll_n > 0:
            nll, _ = nll_metrics(ctx, model, {**nll_cfg, "batch_size": nll_n}, nll_n, partial / f"dt_nll_{step}", fp)
        return {"step": np.array([step]), "quality": np.array([q["quality"]]),
                "nll": np.array([nll[nll_key]]), "nfe": np.array([q["nfe"]])}  # fmt: skip

    fp_all = {**fingerprint, "checkpoints": [(s, p.stat().st_size, p.stat().st_mtime_ns) for s, p in ckpts]}
    res = BatchCache(partial / "during_training", fp_all).run(len(ckpts), one, desc="during training",
                                                              shard=shard)
    if res is None:
        return None
    out = PartResult(metrics={"during_training/nfe": float(np.mean(res["nfe"]))},  # for the cost planner
                     arrays={k: res[k] for k in ("step", "quality", "nll", "nfe")},
                     info={"checkpoints": [p.name for _, p in ckpts], "nll_unit": nll_key})  # fmt: skip
    for i, step in enumerate(res["step"].tolist()):
        out.history.append(("during_training/quality", int(step), float(res["quality"][i])))
        if np.isfinite(res["nll"][i]):
            out.history.append(("during_training/nll", int(step), float(res["nll"][i])))
    return out
