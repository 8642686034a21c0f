"""Table 1: one row per expected (dataset, method), results joined with the paper's values.

Result columns come only from MLflow evaluation runs; ``paper_*`` columns only from the
paper's table. 2D datasets have an NLL in nats, not bits/dim: their ``nll_bpd`` stays
empty and the nats go to a separate table (``NATS_COLUMNS``). A missing evaluation run
gives a row with empty result cells, never a dropped row; a failed evaluation part gives
cells marked ``failed`` with a footnote (``report/failures.py``), and the CSV's
``failed_parts`` column names the parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from fmcore.report.failures import Failure, failures_of

__all__ = [
    "LOWER_IS_BETTER",
    "NATS_COLUMNS",
    "TABLE1_COLUMNS",
    "Table1",
    "build_table1",
    "format_csv",
]

TABLE1_COLUMNS = [
    "dataset", "method", "nll_bpd", "nll_bpd_se", "quality_metric", "quality", "nfe",
    "nfe_ratio_vs_ddpm", "paper_nll_bpd", "paper_fid", "paper_nfe", "mlflow_run_id",
    "git_commit", "data_hash", "failed_parts",
]
NATS_COLUMNS = ["dataset", "method", "nll_nats", "nll_nats_se", "mlflow_run_id"]
LOWER_IS_BETTER = ("nll_bpd", "quality", "nfe", "paper_nll_bpd", "paper_fid", "paper_nfe", "nll_nats")


@dataclass(frozen=True)
class Table1:
    """Table 1 and its companions.

    Attributes:
        rows: frame with exactly ``TABLE1_COLUMNS`` in expected order.
        nats: 2D NLL table (``NATS_COLUMNS``), one row per expected row of a dataset whose
            evaluations report ``nll_nats``.
        missing: expected (dataset, method) pairs with no finished evaluation run.
        stand_ins: quality metric names that are not Inception FID.
        failures: failed evaluation parts of the used runs, numbered for footnotes
            (``report/failures.py``); their cells read ``failed`` with the mark.
    """

    rows: pd.DataFrame
    nats: pd.DataFrame
    missing: list[tuple[str, str]]
    stand_ins: list[str]
    failures: tuple[Failure, ...] = ()


def _num(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out


def build_table1(expected: list[tuple[str, str]], evaluations: pd.DataFrame, paper: pd.DataFrame) -> Table1:
    """Join the expected grid with MLflow evaluations and the paper's values.

    Args:
        expected: (dataset, method) rows in output order.
        evaluations: ``ExperimentRuns.evaluations``.
        paper: ``load_paper_table()``.

    Raises:
        ValueError: ``expected`` lists a (dataset, method) twice.
    """
    if len(set(expected)) != len(expected):
        dup = next(p for p in expected if expected.count(p) > 1)
        raise ValueError(f"expected rows: ({dup[0]}, {dup[1]}) is listed twice")
    by_pair = {(r["dataset"], r["method"]): r for r in evaluations.to_dict("records")}
    by_paper = {(r["dataset"], r["method"]): r for r in paper.to_dict("records") if r["method"]}
    rows, nats, missing, stand_ins = [], [], [], set()
    nats_datasets = {d for (d, _), r in by_pair.items() if not math.isnan(_num(r.get("nll_nats")))}
    for dataset, method in expected:
        ev = by_pair.get((dataset, method))
        pp = by_paper.get((dataset, method), {})
        if ev is None:
            missing.append((dataset, method))
            ev = {}
        quality_metric = ev.get("quality_metric", "")
        if quality_metric and (quality_metric != "fid" or ev.get("stand_in") == "true"):
            stand_ins.add(quality_metric)  # the run's own stand_in flag wins over the name
        rows.append({
            "dataset": dataset,
            "method": method,
            "nll_bpd": _num(ev.get("nll_bpd")),
            "nll_bpd_se": _num(ev.get("nll_bpd_se")),
            "quality_metric": ev.get("quality_metric", ""),
            "quality": _num(ev.get("quality")),
            "nfe": _num(ev.get("nfe")),
            "nfe_ratio_vs_ddpm": math.nan,
            "paper_nll_bpd": _num(pp.get("nll_bpd")),
            "paper_fid": _num(pp.get("fid")),
            "paper_nfe": _num(pp.get("nfe")),
            "mlflow_run_id": ev.get("eval_run_id", ""),
            "git_commit": ev.get("git_commit", ""),
            "data_hash": ev.get("data_hash", ""),
            "failed_parts": ",".join(ev.get("failed_reasons") or {}),
        })
        if dataset in nats_datasets:
            nats.append({"dataset": dataset, "method": method, "nll_nats": _num(ev.get("nll_nats")),
                         "nll_nats_se": _num(ev.get("nll_nats_se")),
                         "mlflow_run_id": ev.get("eval_run_id", "")})
    table = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    ddpm_nfe = {r["dataset"]: r["nfe"] for r in rows if r["method"] == "ddpm"}
    table["nfe_ratio_vs_ddpm"] = [
        nfe / ddpm_nfe[d] if d in ddpm_nfe and ddpm_nfe[d] > 0 else math.nan
        for d, nfe in zip(table["dataset"], table["nfe"], strict=True)
    ]
    failures = failures_of(expected, list(by_pair.values()), nats_datasets)
    nats_table = pd.DataFrame(nats, columns=NATS_COLUMNS)
    return Table1(table, nats_table, missing, sorted(stand_ins), tuple(failures))


def _csv_cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, ".10g")
    text = "" if value is None else str(value)
    if any(ch in text for ch in ',"\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def format_csv(frame: pd.DataFrame) -> str:
    """Deterministic CSV text: header, then rows; floats as ``%.10g``, NaN as empty."""
    lines = [",".join(frame.columns)]
    lines += [",".join(_csv_cell(v) for v in row) for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"
