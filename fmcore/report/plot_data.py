"""Plot data for ``dvc plots show``: the loss curves and the series of Figs. 5 and 7 as CSV.

``reports/<experiment>/plots/`` gets one CSV per curve, in three folders that ``dvc.yaml``'s
top-level ``plots:`` declares (x and y columns as named here):

- ``loss/<dataset>_<method>.csv``: ``step, loss`` (the training run's window means);
- ``fig5/<dataset>_<method>.csv``: ``step, quality, nll`` (quality and NLL during training);
- ``fig7/<dataset>_<method>_<solver>.csv``: ``nfe, quality, error`` (the solver sweep).

With several seeds each value is the mean over seeds, followed by ``<column>_lo`` and
``<column>_hi`` (minimum and maximum over seeds; ``artifacts.spread``).

The values are the metric histories the figures are drawn from (never resampled).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from fmcore.io import atomic_write_text
from fmcore.report.artifacts import FigureData
from fmcore.report.collect import metric_history

__all__ = ["LOSS_KEY", "write_plot_data"]

LOSS_KEY = "loss"  # the training run's metric (docs/CONTRACTS.md, "MLflow")


def _merge(frames: dict[str, pd.DataFrame], x: str) -> pd.DataFrame:
    """Outer-join ``step, value`` frames on step into one frame with a column per name."""
    out: pd.DataFrame | None = None
    for name, frame in frames.items():
        # several seeds: the mean plus the band (<name>_lo, <name>_hi); one seed: the values alone
        f = frame.rename(columns={"step": x, "value": name, "lo": f"{name}_lo", "hi": f"{name}_hi"})
        out = f if out is None else out.merge(f, on=x, how="outer")
    return out.sort_values(x).reset_index(drop=True)


def _write(path: Path, frame: pd.DataFrame) -> Path:
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g"))


def write_plot_data(client: MlflowClient, data: FigureData, evaluations: pd.DataFrame,
                    out_dir: str | Path) -> list[Path]:
    """Write the CSVs above under ``out_dir/plots`` (stale ones removed); return their paths."""
    root = Path(out_dir) / "plots"
    for old in root.glob("*/*.csv"):
        old.unlink()
    files = []
    train_ids = {(r["dataset"], r["method"]): r["train_run_id"] for r in evaluations.to_dict("records")}
    for (dataset, method) in data.order:
        tag = f"{dataset}_{method}"
        if train_ids.get((dataset, method)):
            loss = metric_history(client, train_ids[(dataset, method)], LOSS_KEY)
            if not loss.empty:
                files.append(_write(root / "loss" / f"{tag}.csv", _merge({"loss": loss}, "step")))
        during = data.during_training.get((dataset, method), {})
        during = {k: during[k] for k in ("quality", "nll") if k in during}  # fixed column order
        if during:
            files.append(_write(root / "fig5" / f"{tag}.csv", _merge(during, "step")))
        for solver, series in data.sweep.get((dataset, method), {}).items():
            series = {k: series[k] for k in ("error", "quality") if k in series}
            if series:
                files.append(_write(root / "fig7" / f"{tag}_{solver}.csv", _merge(series, "nfe")))
    return files
