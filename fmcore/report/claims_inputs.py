"""The numbers the claims are checked on: one value per (dataset, method, seed) and metric.

``ClaimInputs.results`` has one row per evaluated run: ``dataset, method, seed, run_id`` and
the scalars ``nll`` (bits/dim for images, nats for 2D: one unit per dataset), ``quality``,
``nfe``, ``straightness``. ``ClaimInputs.curves`` is long: ``dataset, method, seed, key,
step, value`` with the metric histories ``during_training/quality`` (step = training step)
and ``sweep/<solver>/error|quality`` (step = NFE). Both come from MLflow
(``from_mlflow``) or, in tests, from a synthetic table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from mlflow import MlflowClient

from fmcore.report.claims import SCALARS, Claim
from fmcore.report.collect import metric_history

__all__ = ["CURVE_COLUMNS", "RESULT_COLUMNS", "ClaimInputs", "from_mlflow"]

RESULT_COLUMNS = ["dataset", "method", "seed", "run_id", *SCALARS]
CURVE_COLUMNS = ["dataset", "method", "seed", "key", "step", "value"]
QUALITY_CURVE = "during_training/quality"


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame(columns=CURVE_COLUMNS)


@dataclass(frozen=True)
class ClaimInputs:
    """Per-seed results and curves of one experiment (module docstring)."""

    results: pd.DataFrame
    curves: pd.DataFrame = field(default_factory=_empty_curves)

    @property
    def datasets(self) -> list[str]:
        """Datasets in the order they first appear in ``results``."""
        return list(dict.fromkeys(self.results["dataset"]))

    def _scalar(self, dataset: str, method: str, metric: str) -> dict[int, float]:
        rows = self.results[(self.results["dataset"] == dataset) & (self.results["method"] == method)]
        return {int(s): float(v) for s, v in zip(rows["seed"], rows[metric], strict=True)}

    def _curves(self, dataset: str, method: str, key: str) -> dict[int, pd.Series]:
        c = self.curves
        rows = c[(c["dataset"] == dataset) & (c["method"] == method) & (c["key"] == key)]
        rows = rows.loc[[math.isfinite(float(v)) for v in rows["value"]]]
        return {int(s): g.sort_values("step").set_index("step")["value"].astype(float)
                for s, g in rows.groupby("seed")}

    def _sweep(self, claim: Claim, dataset: str, other: str) -> tuple[dict, dict]:
        key = f"sweep/{claim.solver}/{claim.metric.split('_', 1)[1]}"
        a, b = self._curves(dataset, claim.method, key), self._curves(dataset, other, key)
        if claim.at_nfe == "lowest":
            common = set.intersection(*(set(s.index) for s in (*a.values(), *b.values()))) if a and b else set()
            if not common:
                return {}, {}
            nfe = min(common)
        else:
            nfe = claim.at_nfe

        def at(curves: dict[int, pd.Series]) -> dict[int, float]:
            return {s: float(c[nfe]) for s, c in curves.items() if nfe in c.index}
        return at(a), at(b)

    def _steps_to_quality(self, claim: Claim, dataset: str, other: str) -> tuple[dict, dict]:
        """Per common seed: first step where quality <= q*, q* = max(best of a, best of b)."""
        qa, qb = self._curves(dataset, claim.method, QUALITY_CURVE), self._curves(dataset, other, QUALITY_CURVE)
        a, b = {}, {}
        for s in sorted(set(qa) & set(qb)):
            if qa[s].empty or qb[s].empty:
                continue
            target = max(qa[s].min(), qb[s].min())
            a[s] = float(qa[s][qa[s] <= target].index[0])
            b[s] = float(qb[s][qb[s] <= target].index[0])
        return a, b

    def values(self, claim: Claim, dataset: str, other: str) -> tuple[dict[int, float], dict[int, float]]:
        """(seed -> value of ``claim.method``, seed -> value of ``other``) for the claim's metric."""
        if claim.metric in SCALARS:
            return self._scalar(dataset, claim.method, claim.metric), self._scalar(dataset, other, claim.metric)
        if claim.metric.startswith("sweep_"):
            return self._sweep(claim, dataset, other)
        if claim.metric == "steps_to_quality":
            return self._steps_to_quality(claim, dataset, other)
        raise ValueError(f"claim {claim.id}: unknown metric {claim.metric!r}")


def _nll(row: dict) -> float:
    bpd = float(row.get("nll_bpd", math.nan))
    return bpd if math.isfinite(bpd) else float(row.get("nll_nats", math.nan))


def from_mlflow(client: MlflowClient, evaluations: pd.DataFrame) -> ClaimInputs:
    """Results and curves of the evaluation runs in ``ExperimentRuns.evaluations`` (a ``seed``
    column if present, else seed 0; histories read with ``metric_history``)."""
    results, curves = [], []
    for row in evaluations.to_dict("records"):
        seed = int(row.get("seed", 0) or 0)
        key = {"dataset": row["dataset"], "method": row["method"], "seed": seed}
        results.append({**key, "run_id": row["eval_run_id"], "nll": _nll(row),
                        **{m: float(row.get(m, math.nan)) for m in SCALARS if m != "nll"}})
        for metric in row.get("metric_keys", ()):
            if metric == QUALITY_CURVE or (metric.startswith("sweep/") and metric.count("/") == 2
                                           and metric.rsplit("/", 1)[1] in ("error", "quality")):
                hist = metric_history(client, row["eval_run_id"], metric)
                curves += [{**key, "key": metric, "step": int(st), "value": float(v)}
                           for st, v in zip(hist["step"], hist["value"], strict=True)]
    return ClaimInputs(pd.DataFrame(results, columns=RESULT_COLUMNS), pd.DataFrame(curves, columns=CURVE_COLUMNS))
