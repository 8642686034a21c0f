"""Fetch what Figures 4-7 need from MLflow: metric histories and npz artifacts.

Figures 5 and 7 come from metric histories (``during_training/quality``,
``during_training/nll``, ``sweep/<solver>/{error,quality}``); Figures 4 and 6 from the
``snapshots.npz`` and ``trajectories.npz`` artifacts (keys ``t`` [T] and ``x`` [T, N, ...],
docs/CONTRACTS.md), downloaded through the MLflow client. Anything absent or malformed
is skipped with a note, never invented. With several seeds per (dataset, method), the
histories are combined per step (``spread``): ``value`` = mean over the seeds that logged the
step, ``lo``/``hi`` = their minimum and maximum (drawn as a band; only with > 1 seed), and the
arrays of Figs. 4 and 6 are the lowest seed's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from fmcore.io import read_npz
from fmcore.report.collect import metric_history

__all__ = ["FigureData", "gather_figure_data", "load_npz_artifact", "spread"]

Pair = tuple[str, str]


@dataclass
class FigureData:
    """Inputs of Figures 4-7, keyed by (dataset, method) in report order.

    Attributes:
        order: (dataset, method) pairs with a finished evaluation run, in report order.
        snapshots: ``{"t": [T], "x": [T, N, ...]}`` per pair (Fig. 4).
        trajectories: ``{"t": [P], "x": [P, N, ...]}`` per pair (Fig. 6).
        during_training: ``{"quality"|"nll": frame(step, value[, lo, hi])}`` per pair (Fig. 5).
        sweep: ``{solver: {"error"|"quality": frame(step=NFE, value[, lo, hi])}}`` per pair (Fig. 7).
        n_seeds: number of evaluated seeds per pair.
        quality_metric: dataset -> name of its quality metric.
        nll_unit: dataset -> ``"bits/dim"`` or ``"nats"``.
        notes: what was skipped and why.
    """

    order: list[Pair]
    snapshots: dict[Pair, dict[str, np.ndarray]] = field(default_factory=dict)
    trajectories: dict[Pair, dict[str, np.ndarray]] = field(default_factory=dict)
    during_training: dict[Pair, dict[str, pd.DataFrame]] = field(default_factory=dict)
    sweep: dict[Pair, dict[str, dict[str, pd.DataFrame]]] = field(default_factory=dict)
    n_seeds: dict[Pair, int] = field(default_factory=dict)
    quality_metric: dict[str, str] = field(default_factory=dict)
    nll_unit: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_npz_artifact(client: MlflowClient, run_id: str, name: str, workdir: Path,
                      notes: list[str]) -> dict[str, np.ndarray] | None:
    """Download ``name`` from the run's artifacts and check it holds ``t`` [T] and ``x`` [T, ...].

    Returns:
        The arrays, or None (with a note) when the artifact is absent or malformed.
    """
    if name not in {a.path for a in client.list_artifacts(run_id)}:
        notes.append(f"run {run_id}: no {name} artifact")
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in logs
    local = client.download_artifacts(run_id, name, dst_path=str(workdir / run_id))
    try:
        arrays = read_npz(local)
    except (OSError, ValueError) as exc:
        notes.append(f"run {run_id}: {name} is not a readable npz ({exc})")
        return None
    t, x = arrays.get("t"), arrays.get("x")
    if t is None or x is None or t.ndim != 1 or x.ndim < 3 or x.shape[0] != t.shape[0]:
        shapes = {k: list(v.shape) for k, v in arrays.items()}
        notes.append(f"run {run_id}: {name} has {shapes}; expected t [T] and x [T, N, ...]")
        return None
    return arrays


def _histories(client: MlflowClient, run_id: str, keys: tuple[str, ...]) -> tuple[dict, dict]:
    during: dict[str, pd.DataFrame] = {}
    sweep: dict[str, dict[str, pd.DataFrame]] = {}
    for key in keys:
        parts = key.split("/")
        if parts[0] == "during_training" and len(parts) == 2 and parts[1] in ("quality", "nll"):
            during[parts[1]] = metric_history(client, run_id, key)
        elif parts[0] == "sweep" and len(parts) == 3 and parts[2] in ("error", "quality"):
            sweep.setdefault(parts[1], {})[parts[2]] = metric_history(client, run_id, key)
    return during, sweep


def spread(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Combine one history per seed: ``step, value`` (one seed) or ``step, value, lo, hi``
    (mean, minimum, maximum over the seeds that logged each step)."""
    if len(frames) == 1:
        return frames[0]
    allf = pd.concat(frames, ignore_index=True)
    out = allf.groupby("step", sort=True)["value"].agg(value="mean", lo="min", hi="max").reset_index()
    return out[["step", "value", "lo", "hi"]]


def _combine(per_seed: list[dict]) -> dict:
    """Nested dicts of frames (one per seed) -> one dict of ``spread`` frames (keys any seed has)."""
    out: dict = {}
    for key in dict.fromkeys(k for d in per_seed for k in d):
        values = [d[key] for d in per_seed if key in d]
        out[key] = _combine(values) if isinstance(values[0], dict) else spread(values)
    return out


def gather_figure_data(client: MlflowClient, evaluations: pd.DataFrame, order: list[Pair],
                       workdir: Path) -> FigureData:
    """Fetch histories and arrays of every evaluation run in ``order`` (pairs without a run are skipped).

    Args:
        client: MLflow client on the experiment's tracking URI.
        evaluations: ``ExperimentRuns.evaluations``.
        order: report row order.
        workdir: scratch directory for downloaded artifacts.
    """
    by_pair: dict[Pair, list[dict]] = {}
    for r in sorted(evaluations.to_dict("records"), key=lambda r: int(r.get("seed", 0) or 0)):
        by_pair.setdefault((r["dataset"], r["method"]), []).append(r)
    data = FigureData(order=[p for p in order if p in by_pair])
    for pair in data.order:
        evs = by_pair[pair]
        ev = evs[0]  # the lowest seed: its arrays for Figs. 4 and 6
        run_id = ev["eval_run_id"]
        data.n_seeds[pair] = len(evs)
        dataset = pair[0]
        if ev["quality_metric"]:
            data.quality_metric.setdefault(dataset, ev["quality_metric"])
        if not math.isnan(ev["nll_bpd"]):
            data.nll_unit.setdefault(dataset, "bits/dim")
        elif not math.isnan(ev["nll_nats"]):
            data.nll_unit.setdefault(dataset, "nats")
        per_seed = [_histories(client, e["eval_run_id"], e["metric_keys"]) for e in evs]
        during = _combine([d for d, _ in per_seed])
        sweep = _combine([s for _, s in per_seed])
        if during:
            data.during_training[pair] = during
        if sweep:
            data.sweep[pair] = dict(sorted(sweep.items()))
        for name, target in (("snapshots.npz", data.snapshots), ("trajectories.npz", data.trajectories)):
            arrays = load_npz_artifact(client, run_id, name, workdir, data.notes)
            if arrays is not None:
                target[pair] = arrays
    return data
