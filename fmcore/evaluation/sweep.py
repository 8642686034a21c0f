"""Fixed-step solver sweep (data of Fig. 7): quality and numerical error against NFE.

From one fixed set of noise x_0 (stream ``sweep``), each solver s in ``sweep.solvers``
(euler: 1 evaluation per step, midpoint: 2, rk4: 4) is run at every NFE budget b of
``sweep.nfe`` with ``b / evals_per_step`` uniform steps; budgets a solver cannot hit exactly
(b not a multiple of its evaluations per step) are skipped and listed. For each run:

.. math::

    \\text{error} = \\sqrt{\\tfrac{1}{N D} \\textstyle\\sum_{i} \\lVert x_1^{(s,b)}(x_0^i)
        - x_1^{\\star}(x_0^i) \\rVert^2}

(RMSE per dimension) against a tight-tolerance dopri5 solution x_1^* from the same noise
(``sweep.reference_atol/rtol``), and the quality metric of the N samples. The NFE actually
counted by :func:`fmcore.sampling.sample` is stored and must equal the budget.
"""

from __future__ import annotations

import numpy as np
import torch

from fmcore.evaluation.context import EvalContext, PartResult, guard_solver, standard_noise
from fmcore.evaluation.io import BatchCache
from fmcore.sampling import sample_path

__all__ = ["EVALS_PER_STEP", "plan_sweep", "run_sweep"]

EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "rk4": 4}


def plan_sweep(solvers: list[str], budgets: list[int]) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(solver, budget, steps) triples to run, and a note for each skipped pair.

    Raises:
        ValueError: an unknown solver or a budget that is not a positive integer.
    """
    runs, skipped = [], []
    for s in solvers:
        if s not in EVALS_PER_STEP:
            raise ValueError(f"evaluate.*.sweep.solvers: {s!r}, expected some of {', '.join(EVALS_PER_STEP)}")
        for b in budgets:
            if not isinstance(b, int) or isinstance(b, bool) or b < 1:
                raise ValueError(f"evaluate.*.sweep.nfe: {b!r}, expected positive integers")
            k = EVALS_PER_STEP[s]
            if b % k:
                skipped.append(f"{s}@{b} (not a multiple of {k} evaluations per step)")
            else:
                runs.append((s, b, b // k))
    return runs, skipped


def run_sweep(ctx: EvalContext, fingerprint: dict, shard: tuple[int, int] | None = None) -> PartResult | None:
    """Run the sweep of ``evaluate.<ds>.sweep`` on the final EMA field (see module docstring).

    With ``shard=(s, S)``: the (solver, budget) runs i with i mod S = s only (every shard solves
    the shared dopri5 reference, deterministically); None, the merge builds the table."""
    cfg, model, quality = ctx.cfg["sweep"], ctx.model, ctx.quality
    runs, skipped = plan_sweep(list(cfg["solvers"]), list(cfg["nfe"]))
    n = int(cfg["n_samples"])
    noise = standard_noise(n, ctx.sample_shape, ctx.seed, "sweep", device=model.device)
    ref_cache = BatchCache(ctx.eval_dir / "partial" / "sweep_reference", fingerprint)

    def reference(_: int) -> dict[str, np.ndarray]:
        x, nfe = guard_solver("sweep reference", sample_path, model.v, model.path, noise, method="dopri5",
                              atol=float(cfg["reference_atol"]), rtol=float(cfg["reference_rtol"]))
        return {"x": x.cpu().numpy(), "nfe": np.array([nfe])}

    ref = ref_cache.run(1, reference, desc="sweep reference (dopri5)")
    x_ref = torch.from_numpy(ref["x"]).double()

    def one(i: int) -> dict[str, np.ndarray]:
        solver, budget, steps = runs[i]
        x, nfe = sample_path(model.v, model.path, noise, method=solver, steps=steps)
        if nfe != budget:
            raise RuntimeError(
                f"sweep {solver}@{budget}: counted NFE {nfe} != budget (solver wiring changed?)"
            )
        if not bool(torch.isfinite(x).all()):  # a diverged low-NFE solve is a data point, not a crash
            return {"nfe": np.array([nfe]), "error": np.array([np.inf]), "quality": np.array([np.nan])}
        err = float(torch.sqrt(((x.cpu().double() - x_ref) ** 2).mean()))
        score = quality.score(quality.features(x))[quality.name]
        return {"nfe": np.array([nfe]), "error": np.array([err]), "quality": np.array([score])}

    res = BatchCache(ctx.eval_dir / "partial" / "sweep_runs", {**fingerprint, "runs": runs}).run(
        len(runs), one, desc=f"solver sweep {ctx.job['dataset']}/{ctx.job['method']}", shard=shard)
    if res is None:
        return None
    solvers, budgets = list(cfg["solvers"]), sorted(set(int(b) for b in cfg["nfe"]))
    table = {k: np.full((len(solvers), len(budgets)), np.nan) for k in ("nfe", "error", "quality")}
    out = PartResult(info={"skipped": skipped, "reference_nfe": int(ref["nfe"][0]), "n_samples": n})
    for i, (s, b, _) in enumerate(runs):
        r, c = solvers.index(s), budgets.index(b)
        for k in table:
            table[k][r, c] = res[k][i]
        if np.isfinite(res["error"][i]):
            out.history += [(f"sweep/{s}/quality", b, float(res["quality"][i])),
                            (f"sweep/{s}/error", b, float(res["error"][i]))]  # fmt: skip
        else:
            out.info.setdefault("diverged", []).append(f"{s}@{b}")
    out.arrays = {"solvers": np.array(solvers), "budgets": np.array(budgets), **table,
                  "reference_nfe": np.array(int(ref["nfe"][0])),
                  "metric": np.array(quality.name)}  # fmt: skip
    out.metrics = {"sweep/reference_nfe": float(ref["nfe"][0])}
    return out
