"""Figures 4-7 of the paper, redrawn from one experiment's MLflow records (matplotlib).

- Fig. 4 ``fig4_paths_2d``: rows = methods, columns = time snapshots, 2D histograms.
- Fig. 5 ``fig5_quality_during_training``: quality (and NLL) vs training step per method.
- Fig. 6 ``fig6_trajectories``: trajectories from the same noise per method (2D: paths
  in the plane; images: one sample along t).
- Fig. 7 ``fig7_solver_sweep``: error vs NFE and quality vs NFE, one panel per solver,
  one line per method (colour).
With several seeds, Figs. 5 and 7 draw the mean over seeds and the min-max spread as a band.
A figure without data says so on its canvas instead of being skipped. Figures are built
with ``matplotlib.figure.Figure`` (no pyplot state) and saved atomically as PNG and PDF
with the creation-date/software metadata removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from fmcore.io import atomic_write
from fmcore.report.artifacts import FigureData
from fmcore.report.methods import METHOD_LABELS, method_colors, method_label

__all__ = ["FIGURES", "METHOD_LABELS", "draw_figures", "save_figure"]

FIGURES = ("fig4_paths_2d", "fig5_quality_during_training", "fig6_trajectories", "fig7_solver_sweep")
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}


def _label(method: str) -> str:
    return method_label(method)


def _colors(data: FigureData) -> dict[str, str]:
    """Colours of the figure's methods (``report/methods.py``: unknown methods get their own)."""
    return method_colors(m for _, m in data.order)


def _band(ax, hist, color: str) -> None:
    """Seed spread (min to max over seeds, ``artifacts.spread``) as a translucent band."""
    if "lo" in hist.columns:
        ax.fill_between(hist["step"], hist["lo"], hist["hi"], color=color, alpha=0.2, lw=0)


def _placeholder(title: str, message: str) -> Figure:
    fig = Figure(figsize=(6, 2.5))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def _panel_lim(points: np.ndarray, common: float) -> float:
    """Half-width of a 2D panel: the shared one, widened to hold 99.5% of this panel's points."""
    return max(common, 1.15 * float(np.quantile(np.abs(points), 0.995)))


def fig4_paths_2d(data: FigureData) -> Figure:
    """Rows = (dataset/)method, columns = snapshot times, 2D histograms of x_t."""
    pairs = [p for p in data.order if p in data.snapshots and data.snapshots[p]["x"].ndim == 3
             and data.snapshots[p]["x"].shape[-1] == 2]
    if not pairs:
        return _placeholder("Fig. 4: 2D paths", "no 2D snapshots.npz in this experiment's evaluation runs")
    n_t = max(data.snapshots[p]["t"].shape[0] for p in pairs)
    final = np.concatenate([data.snapshots[p]["x"][-1] for p in pairs])
    lim = max(3.0, 1.15 * float(np.quantile(np.abs(final), 0.995)))
    fig = Figure(figsize=(1.9 * n_t + 1.2, 1.9 * len(pairs)), layout="constrained")
    axes = fig.subplots(len(pairs), n_t, squeeze=False)
    many = len({d for d, _ in pairs}) > 1
    for i, (dataset, method) in enumerate(pairs):
        snap = data.snapshots[(dataset, method)]
        for j in range(n_t):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= snap["t"].shape[0]:
                ax.axis("off")
                continue
            x = snap["x"][j]
            r = _panel_lim(x, lim)  # wider only where the panel's samples are (e.g. VE noise)
            bins = int(np.clip(1.5 * np.sqrt(len(x)), 24, 80))  # ~3+ samples per occupied bin
            hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=bins, range=[[-r, r], [-r, r]])
            ax.imshow(hist.T, origin="lower", extent=(-r, r, -r, r), cmap="viridis",
                      interpolation="nearest", aspect="equal")
            if i == 0:
                ax.set_title(f"t = {float(snap['t'][j]):.2f}")
        axes[i, 0].set_ylabel(f"{dataset}\n{_label(method)}" if many else _label(method))
    fig.suptitle("Fig. 4: samples along the probability path (t = 0 noise, t = 1 data)")
    return fig


def fig5_quality_during_training(data: FigureData) -> Figure:
    """Columns = datasets; rows = quality and NLL of EMA weights vs training step, one line per method."""
    datasets = list(dict.fromkeys(d for d, m in data.order if (d, m) in data.during_training))
    if not datasets:
        return _placeholder("Fig. 5: quality during training", "no during_training/* metric histories")
    kinds = [k for k in ("quality", "nll") if any(k in h for h in data.during_training.values())]
    color = _colors(data)
    fig = Figure(figsize=(4.2 * len(datasets), 3.0 * len(kinds)), layout="constrained")
    axes = fig.subplots(len(kinds), len(datasets), squeeze=False)
    for j, dataset in enumerate(datasets):
        for i, kind in enumerate(kinds):
            ax = axes[i, j]
            for d, method in data.order:
                hist = data.during_training.get((d, method), {}).get(kind)
                if d == dataset and hist is not None and not hist.empty:
                    ax.plot(hist["step"], hist["value"], marker="o", ms=3, color=color[method],
                            label=_label(method))
                    _band(ax, hist, color[method])
            if not ax.lines:
                ax.text(0.5, 0.5, f"no {kind} during training\n(evaluate.{dataset}.during_training)",
                        ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")
            metric = data.quality_metric.get(dataset, "quality")
            if kind == "quality":
                ylabel = metric + ("" if metric == "fid" else " (stand-in, not FID)")
            else:
                ylabel = f"NLL ({data.nll_unit.get(dataset, 'unit not recorded')})"
            ax.set_ylabel(ylabel)
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(dataset)
                if ax.lines:
                    ax.legend(fontsize=7)
    fig.suptitle("Fig. 5: sample quality during training")
    return fig


def _image(x: np.ndarray) -> np.ndarray:
    img = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0
    return img[0] if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))


def _trajectory_block(sub: Figure, data: FigureData, dataset: str) -> None:
    pairs = [p for p in data.order if p[0] == dataset and p in data.trajectories]
    first = data.trajectories[pairs[0]]["x"]
    color = _colors(data)
    if first.ndim == 3 and first.shape[-1] == 2:
        axes = sub.subplots(1, len(pairs), squeeze=False)[0]
        ends = np.concatenate([data.trajectories[p]["x"][-1] for p in pairs])
        lim = max(1.0, 1.1 * float(np.quantile(np.abs(ends), 0.995)))
        for ax, (_, method) in zip(axes, pairs, strict=True):
            x = data.trajectories[(dataset, method)]["x"]
            ax.plot(x[:, :, 0], x[:, :, 1], color=color[method], lw=0.6, alpha=0.6)
            ax.scatter(x[0, :, 0], x[0, :, 1], s=4, c="black", label="x_0 (noise)")
            ax.scatter(x[-1, :, 0], x[-1, :, 1], s=4, c=color[method], label="x_1")
            ax.set_title(_label(method), fontsize=9)
            r = _panel_lim(x.reshape(-1, 2), lim)
            ax.set_xlim(-r, r)
            ax.set_ylim(-r, r)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xticks([])
            ax.set_yticks([])
        sub.suptitle(f"{dataset}: trajectories from the same noise")
        return
    n_show = min(8, first.shape[0])
    axes = sub.subplots(len(pairs), n_show, squeeze=False)
    for i, (_, method) in enumerate(pairs):
        traj = data.trajectories[(dataset, method)]
        for j, k in enumerate(np.linspace(0, traj["x"].shape[0] - 1, n_show).round().astype(int)):
            ax = axes[i, j]
            ax.imshow(_image(traj["x"][k, 0]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t = {float(traj['t'][k]):.2f}", fontsize=8)
        axes[i, 0].set_ylabel(_label(method), fontsize=8)
    sub.suptitle(f"{dataset}: one sample along t, same noise for every method")


def fig6_trajectories(data: FigureData) -> Figure:
    """One block per dataset: 2D paths (columns = methods) or image rows (rows = methods)."""
    datasets = list(dict.fromkeys(d for d, m in data.order if (d, m) in data.trajectories))
    if not datasets:
        return _placeholder("Fig. 6: trajectories",
                            "no trajectories.npz in this experiment's evaluation runs")
    n_methods = max(sum(1 for p in data.order if p[0] == d and p in data.trajectories) for d in datasets)
    heights = [3.0 if data.trajectories[next(p for p in data.order if p[0] == d and p in
                                             data.trajectories)]["x"].shape[-1] == 2
               else 1.1 * n_methods + 0.6 for d in datasets]
    fig = Figure(figsize=(max(2.6 * n_methods, 5.0), sum(heights)), layout="constrained")
    subs = fig.subfigures(len(datasets), 1, squeeze=False, height_ratios=heights)[:, 0]
    for sub, dataset in zip(subs, datasets, strict=True):
        _trajectory_block(sub, data, dataset)
    return fig


def fig7_solver_sweep(data: FigureData) -> Figure:
    """Rows = (dataset, error | quality), columns = fixed-step solvers; one line per method vs NFE
    (mean over seeds, the seed spread as a band), so a panel holds one line per method only."""
    datasets = list(dict.fromkeys(d for d, m in data.order if (d, m) in data.sweep))
    if not datasets:
        return _placeholder("Fig. 7: solver sweep", "no sweep/<solver>/* metric histories")
    solvers = sorted({s for sw in data.sweep.values() for s in sw})
    color = _colors(data)
    fig = Figure(figsize=(3.4 * len(solvers) + 1.8, 2.6 * 2 * len(datasets)), layout="constrained")
    axes = fig.subplots(2 * len(datasets), len(solvers), squeeze=False)
    shown_methods: list[str] = []
    for i, dataset in enumerate(datasets):
        methods = [m for d, m in data.order if d == dataset and (d, m) in data.sweep]
        shown_methods += [m for m in methods if m not in shown_methods]
        metric = data.quality_metric.get(dataset, "quality")
        for k, kind in enumerate(("error", "quality")):
            for j, solver in enumerate(solvers):
                ax = axes[2 * i + k, j]
                for method in methods:
                    hist = data.sweep[(dataset, method)].get(solver, {}).get(kind)
                    if hist is not None and not hist.empty:
                        ax.plot(hist["step"], hist["value"], marker="o", ms=3, color=color[method],
                                label=f"{_label(method)} ({solver})")
                        _band(ax, hist, color[method])
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_formatter(ScalarFormatter())
                shown = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
                if kind == "error" and shown and min(shown) > 0:
                    ax.set_yscale("log")
                else:
                    ax.ticklabel_format(axis="y", useOffset=False)
                ax.set_xlabel("NFE")
                if j == 0:
                    ax.set_ylabel(f"{dataset}\n" + ("error vs. adaptive solve" if kind == "error"
                                                    else metric + ("" if metric == "fid" else " (stand-in)")))
                ax.set_title(f"{dataset}: {solver}", fontsize=9)
                ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=color[m], label=_label(m)) for m in shown_methods]
    if any(n > 1 for n in data.n_seeds.values()):
        handles.append(Line2D([], [], color="0.5", lw=6, alpha=0.3, label="min-max over seeds"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    fig.suptitle("Fig. 7: fixed-step solvers at low NFE (columns: solver)")
    return fig


def save_figure(fig: Figure, out_dir: Path, stem: str, dpi: int = 120) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically, without time/software metadata."""
    paths = []
    for fmt in ("png", "pdf"):
        def write(f, fmt: str = fmt) -> None:
            fig.savefig(f, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
        paths.append(atomic_write(Path(out_dir) / f"{stem}.{fmt}", write))
    return paths


def draw_figures(data: FigureData, out_dir: Path) -> list[Path]:
    """Draw and save Figures 4-7; returns the written paths (PNG, PDF per figure)."""
    makers = (fig4_paths_2d, fig5_quality_during_training, fig6_trajectories, fig7_solver_sweep)
    paths: list[Path] = []
    for stem, make in zip(FIGURES, makers, strict=True):
        paths += save_figure(make(data), out_dir, stem)
    return paths
