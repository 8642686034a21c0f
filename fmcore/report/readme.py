"""``reports/<experiment>/README.md``: tables inline, figures embedded, provenance of every cell.

Unlike the CSV/MD/TEX tables, the README ends with the time and machine the report was
generated on, so it is the one file that changes between two identical regenerations.
"""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from fmcore.report.figures import FIGURES
from fmcore.report.paper import paper_only_rows
from fmcore.report.table import Table1

__all__ = ["dvc_data_hashes", "render_readme"]

_FIGURE_TITLES = {
    "fig4_paths_2d": "Figure 4: samples along the path (2D)",
    "fig5_quality_during_training": "Figure 5: quality during training",
    "fig6_trajectories": "Figure 6: trajectories from the same noise",
    "fig7_solver_sweep": "Figure 7: fixed-step solvers vs NFE",
}


def dvc_data_hashes(lock_path: Path, data_dir: str, datasets: list[str]) -> dict[str, str]:
    """DVC md5 of each prepared dataset directory, read from ``dvc.lock`` (empty if absent).

    Args:
        lock_path: the repository's ``dvc.lock``.
        data_dir: prepared-data root from the params (``data/prepared``).
        datasets: dataset names; an out ``<data_dir>/<dataset>`` of any stage matches.
    """
    if not lock_path.is_file():
        return {}
    try:
        lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return {}
    wanted = {str(Path(data_dir) / d): d for d in datasets}
    found: dict[str, str] = {}
    stages = lock.get("stages", {}) if isinstance(lock, dict) else {}
    for stage in stages.values() if isinstance(stages, dict) else []:
        for out in stage.get("outs", []) if isinstance(stage, dict) else []:
            if isinstance(out, dict) and str(Path(str(out.get("path", "")))) in wanted and out.get("md5"):
                found[wanted[str(Path(out["path"]))]] = str(out["md5"])
    return found


def _provenance(evaluations: pd.DataFrame, table: Table1, dvc: dict[str, str]) -> list[str]:
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for r in sorted(evaluations.to_dict("records"), key=lambda r: int(r.get("seed", 0) or 0)):
        by_pair.setdefault((r["dataset"], r["method"]), []).append(r)
    lines = ["| dataset | method | evaluation run | training run | git commit | data hash "
             "(manifest sha256) | DVC md5 | evaluated (UTC) | host | device |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset, method in zip(table.rows["dataset"], table.rows["method"], strict=True):
        evs = by_pair.get((dataset, method))
        if not evs:
            lines.append(f"| {dataset} | {method} | **missing** | | | | {dvc.get(dataset, '')} | | | |")
            continue
        for ev in evs:
            shown = f"{method} (seed {ev.get('seed', 0)})" if table.seeded else method
            lines.append(_provenance_row(dataset, shown, ev, dvc))
    return lines


def _provenance_row(dataset: str, method: str, ev: dict, dvc: dict[str, str]) -> str:
    cells = [dataset, method, f"`{ev['eval_run_id']}`",
             f"`{ev['train_run_id']}`" if ev["train_run_id"] else "",
             f"`{ev['git_commit']}`" if ev["git_commit"] else "not recorded",
             f"`{ev['data_hash']}`" if ev["data_hash"] else "not recorded",
             dvc.get(dataset, ""), ev["end_time"] or ev["start_time"],
             ev["host"] or "not recorded", ev["device"] or "not recorded"]
    return "| " + " | ".join(cells) + " |"


def render_readme(*, experiment: str, command: str, tracking_uri: str, table: Table1, table_md: str,
                  evaluations: pd.DataFrame, paper: pd.DataFrame, warnings: list[str], notes: list[str],
                  dvc: dict[str, str], figures: bool = True, verdicts: list[str] | None = None) -> str:
    """The report's README.md text.

    Args:
        experiment: experiment name.
        command: the command line that regenerates the report.
        tracking_uri: the MLflow store it was read from.
        table: Table 1 (rows, 2D NLL, missing pairs).
        table_md: ``markdown_table`` output (inlined verbatim).
        evaluations: ``ExperimentRuns.evaluations`` (provenance columns).
        paper: ``load_paper_table()`` (paper-only rows of the experiment's datasets are listed).
        warnings: shown at the top (missing runs).
        notes: shown at the end (skipped artifacts, superseded runs).
        dvc: dataset -> DVC md5 of its prepared data.
        figures: embed Figures 4-7 (False: say they were not drawn).
        verdicts: the claims' verdict table (``claims_render.verdict_table``), shown first.
    """
    lines = [f"# Report: experiment `{experiment}`", "",
             f"Generated from the MLflow store `{tracking_uri}` by `{command}`. Do not edit by hand; "
             "every number below is read from MLflow (result columns) or from the paper's Table 1 "
             "(`paper_*` columns).", ""]
    lines += [f"> **Warning:** {w}" for w in warnings] + ([""] if warnings else [])
    if verdicts:
        lines += ["## Verdict: the paper's claims on these runs", ""] + verdicts + [
            "", "Rule, intervals and per-seed values: [claims.md](claims.md), [claims.csv](claims.csv).", ""]
    lines += ["## Table 1", "", table_md.rstrip("\n"), "",
              "Files: [table1.csv](table1.csv), [table1.md](table1.md), [table1.tex](table1.tex) "
              "(booktabs).", ""]
    extra = paper_only_rows(paper, list(dict.fromkeys(table.rows["dataset"])))
    if not extra.empty:
        lines += ["Paper-only baselines of the same datasets (no method of this project; "
                  "paper values, not results):", "", "| dataset | model | paper FID |", "|---|---|---:|"]
        lines += [f"| {r.dataset} | {r.model} | {r.fid:.2f} |" for r in extra.itertuples()] + [""]
    lines += ["## Figures", ""]
    if not figures:
        lines += ["Not drawn in this run (`--no-figures`).", ""]
    for stem in FIGURES if figures else ():
        lines += [f"### {_FIGURE_TITLES[stem]}", "", f"![{_FIGURE_TITLES[stem]}]({stem}.png)", "",
                  f"[PDF]({stem}.pdf)", ""]
    lines += ["## Provenance", "",
              "Every result cell of a row comes from that row's evaluation run; git commit and data "
              "hash are the tags of its training run.", ""]
    lines += _provenance(evaluations, table, dvc) + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"Report generated {now} on {platform.system()} {platform.machine()}, "
              f"Python {sys.version.split()[0]}.", ""]
    return "\n".join(lines)
