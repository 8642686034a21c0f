"""Table 1: one row per expected (dataset, method), results joined with the paper's values.

Result columns come only from MLflow evaluation runs; ``paper_*`` columns only from the
paper's table. 2D datasets have an NLL in nats, not bits/dim: their ``nll_bpd`` stays
empty and the nats go to a separate table (``NATS_COLUMNS``). A missing evaluation run
gives a row with empty result cells, never a dropped row; a failed evaluation part gives
cells marked ``failed`` with a footnote (``report/failures.py``), and the CSV's
``failed_parts`` column names the parts.

Seeds: a (dataset, method) with several evaluated seeds gets the mean over seeds in
``nll_bpd``, ``quality``, ``nfe`` (``nll_bpd_se``: the mean of the runs' own standard errors),
the half-width of the 95 % t-interval of that mean in ``<metric>_ci95``, the seed count in
``n_seeds`` and every run id in ``mlflow_run_id`` (``;``-separated). Those columns appear
only when some row has more than one seed, so a one-seed table is unchanged;
``Table1.seeds`` keeps one row per seed (``SEED_COLUMNS``, written as ``table1_seeds.csv``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

from fmcore.report.failures import Failure, failures_of

__all__ = [
    "LOWER_IS_BETTER",
    "NATS_COLUMNS",
    "SEED_COLUMNS",
    "TABLE1_COLUMNS",
    "Table1",
    "build_table1",
    "ci95",
    "format_csv",
]

TABLE1_COLUMNS = [
    "dataset", "method", "nll_bpd", "nll_bpd_se", "nll_bpd_k1", "quality_metric", "quality", "nfe",
    "nfe_batch", "nfe_ratio_vs_ddpm", "paper_nll_bpd", "paper_fid", "paper_nfe", "mlflow_run_id",
    "git_commit", "data_hash", "failed_parts",
]
NATS_COLUMNS = ["dataset", "method", "nll_nats", "nll_nats_se", "mlflow_run_id"]
SEED_METRICS = ("nll_bpd", "quality", "nfe")
SEED_COLUMNS = ["dataset", "method", "seed", "nll_bpd", "nll_bpd_se", "nll_nats", "nll_nats_se", "quality_metric",
                "quality", "nfe", "mlflow_run_id", "train_run_id"]
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
        seeds: one row per evaluated (dataset, method, seed) (``SEED_COLUMNS``).
    """

    rows: pd.DataFrame
    nats: pd.DataFrame
    missing: list[tuple[str, str]]
    stand_ins: list[str]
    failures: tuple[Failure, ...] = ()
    seeds: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SEED_COLUMNS))

    @property
    def seeded(self) -> bool:
        """True when some row is the mean of several seeds."""
        return "n_seeds" in self.rows.columns


def _num(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out


def ci95(values: list[float]) -> float:
    """Half-width of the 95 % t-interval of the mean: t_{0.975, n-1} s / sqrt(n) (NaN for n < 2)."""
    values = [v for v in values if math.isfinite(v)]
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n))


def _mean(values: list[float]) -> float:
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def _batch(values: list[float]) -> float:
    """The evaluation batch of the NFE column (one value; NaN if unrecorded or differing by seed)."""
    values = {v for v in values if math.isfinite(v)}
    return values.pop() if len(values) == 1 else math.nan


def _seed_rows(evaluations: pd.DataFrame) -> dict[tuple[str, str], list[dict]]:
    by_pair: dict[tuple[str, str], list[dict]] = {}
    records = evaluations.to_dict("records")
    for r in sorted(records, key=lambda r: int(r.get("seed", 0) or 0)):
        by_pair.setdefault((r["dataset"], r["method"]), []).append(r)
    return by_pair


def build_table1(expected: list[tuple[str, str]], evaluations: pd.DataFrame, paper: pd.DataFrame) -> Table1:
    """Join the expected grid with MLflow evaluations (one or more seeds each) and the paper's values.

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
    by_pair = _seed_rows(evaluations)
    by_paper = {(r["dataset"], r["method"]): r for r in paper.to_dict("records") if r["method"]}
    seeded = any(len(v) > 1 for p, v in by_pair.items() if p in set(expected))
    rows, nats, missing, stand_ins, per_seed = [], [], [], set(), []
    nats_datasets = {d for (d, _), rs in by_pair.items() for r in rs if not math.isnan(_num(r.get("nll_nats")))}
    for dataset, method in expected:
        evs = by_pair.get((dataset, method), [])
        pp = by_paper.get((dataset, method), {})
        if not evs:
            missing.append((dataset, method))
        ev = evs[0] if evs else {}
        for r in evs:
            quality_metric = r.get("quality_metric", "")
            if quality_metric and (quality_metric != "fid" or r.get("stand_in") == "true"):
                stand_ins.add(quality_metric)  # the run's own stand_in flag wins over the name
            per_seed.append({c: r.get(c, "") if c in ("dataset", "method", "quality_metric", "train_run_id")
                             else int(r.get("seed", 0) or 0) if c == "seed"
                             else r.get("eval_run_id", "") if c == "mlflow_run_id" else _num(r.get(c))
                             for c in SEED_COLUMNS})

        def col(name: str, rs: list[dict] = evs) -> list[float]:
            return [_num(r.get(name)) for r in rs]
        row = {
            "dataset": dataset,
            "method": method,
            "nll_bpd": _mean(col("nll_bpd")),
            "nll_bpd_se": _mean(col("nll_bpd_se")),
            "nll_bpd_k1": _mean(col("nll_bpd_k1")),
            "quality_metric": ev.get("quality_metric", ""),
            "quality": _mean(col("quality")),
            "nfe": _mean(col("nfe")),
            "nfe_batch": _batch(col("nfe_batch_size")),
            "nfe_ratio_vs_ddpm": math.nan,
            "paper_nll_bpd": _num(pp.get("nll_bpd")),
            "paper_fid": _num(pp.get("fid")),
            "paper_nfe": _num(pp.get("nfe")),
            "mlflow_run_id": ";".join(str(r.get("eval_run_id", "")) for r in evs),
            "git_commit": ev.get("git_commit", ""),
            "data_hash": ev.get("data_hash", ""),
            "failed_parts": ",".join(dict.fromkeys(p for r in evs for p in (r.get("failed_reasons") or {}))),
        }
        if seeded:
            row["n_seeds"] = len(evs)
            row.update({f"{m}_ci95": ci95(col(m)) for m in SEED_METRICS})
        rows.append(row)
        if dataset in nats_datasets:
            nats.append({"dataset": dataset, "method": method, "nll_nats": _mean(col("nll_nats")),
                         "nll_nats_se": _mean(col("nll_nats_se")), "mlflow_run_id": row["mlflow_run_id"]}
                        | ({"n_seeds": len(evs), "nll_nats_ci95": ci95(col("nll_nats"))} if seeded else {}))
    columns = TABLE1_COLUMNS
    if seeded:  # interval columns right after their metric
        columns = []
        for c in TABLE1_COLUMNS:
            columns += ["n_seeds", c] if c == "nll_bpd" else [c]
            columns += [f"{c}_ci95"] if c in SEED_METRICS else []
    table = pd.DataFrame(rows, columns=columns)
    ddpm_nfe = {r["dataset"]: r["nfe"] for r in rows if r["method"] == "ddpm"}
    table["nfe_ratio_vs_ddpm"] = [
        nfe / ddpm_nfe[d] if d in ddpm_nfe and ddpm_nfe[d] > 0 else math.nan
        for d, nfe in zip(table["dataset"], table["nfe"], strict=True)
    ]
    # failed parts: numbered per (dataset, method) from the last seed's run (report/failures.py)
    failures = failures_of(expected, [r for rs in by_pair.values() for r in rs], nats_datasets)
    nats_cols = NATS_COLUMNS[:2] + (["n_seeds"] if seeded else []) + NATS_COLUMNS[2:3] + \
        (["nll_nats_ci95"] if seeded else []) + NATS_COLUMNS[3:]
    return Table1(table, pd.DataFrame(nats, columns=nats_cols), missing, sorted(stand_ins), tuple(failures),
                  pd.DataFrame(per_seed, columns=SEED_COLUMNS))


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
