"""``reports/<experiment>/claims.md`` and ``claims.csv``: the verdicts of the paper's claims.

``claims.csv`` has one row per (claim, dataset, other method) with every seed's value
(``seed:value`` lists), the interval and the verdict; ``claims.md`` opens with the verdict
per (claim, dataset) (``verdict_table``, also the first section of the report's README),
then each claim's comparisons and the statistical rule.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from fmcore.io import atomic_write_text
from fmcore.report.claims import Claim, Comparison, combine
from fmcore.report.table import format_csv

__all__ = ["CLAIMS_COLUMNS", "RULE_TEXT", "claims_frame", "verdict_table", "write_claims"]

CLAIMS_COLUMNS = ["claim", "dataset", "method", "other", "metric", "verdict", "firm", "point", "n_seeds",
                  "paired", "mean_method", "mean_other", "diff", "ci_low", "ci_high", "threshold",
                  "values_method", "values_other", "basis", "source"]
RULE_TEXT = (
    "Each claim compares a metric where lower is better (NLL, quality, NFE, solver error, training "
    "steps, path deviation): d = metric(method) - metric(other) per seed. Verdict from the 95 % "
    "t-interval [lo, hi] of the mean of d (paired over seeds when both methods ran the same seeds, "
    "else Welch): `reproduced` if hi < threshold, `not reproduced` if lo > threshold, `inconclusive` "
    "if the interval contains the threshold. A firm verdict needs at least `min_seeds` seeds (3); "
    "with fewer the claim's fallback applies (`inconclusive` by default; `point`: the mean decides, "
    "marked not firm). `point` shows how the mean difference alone compares. A claim against "
    "several methods is reproduced only if every comparison is. Rules: `fmcore/report/claims.yaml`.")


def _values(values: dict[int, float]) -> str:
    return ";".join(f"{s}:{v:.10g}" for s, v in sorted(values.items()))


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values) if values else math.nan


def claims_frame(claims: list[Claim], comparisons: list[Comparison]) -> pd.DataFrame:
    """The ``claims.csv`` rows (``CLAIMS_COLUMNS``), in claim, dataset, other order."""
    source = {c.id: c.source for c in claims}
    rows = [{"claim": c.claim, "dataset": c.dataset, "method": c.method, "other": c.other, "metric": c.metric,
             "verdict": c.verdict, "firm": "yes" if c.firm else "no", "point": c.point, "n_seeds": c.n,
             "paired": "yes" if c.paired else "no", "mean_method": _mean(c.a), "mean_other": _mean(c.b),
             "diff": c.diff, "ci_low": c.lo, "ci_high": c.hi, "threshold": c.threshold,
             "values_method": _values(c.a), "values_other": _values(c.b), "basis": c.basis,
             "source": source.get(c.claim, "")} for c in comparisons]
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


def _groups(comparisons: list[Comparison]) -> dict[tuple[str, str], list[Comparison]]:
    groups: dict[tuple[str, str], list[Comparison]] = {}
    for c in comparisons:
        groups.setdefault((c.claim, c.dataset), []).append(c)
    return groups


def verdict_table(claims: list[Claim], comparisons: list[Comparison]) -> list[str]:
    """Markdown lines: one row per (claim, dataset) with its verdict and what decided it."""
    statement = {c.id: c.statement for c in claims}
    lines = ["| claim | dataset | verdict | firm | seeds | decided by | point comparison (means only) |",
             "|---|---|---|---|---:|---|---|"]
    for (claim, dataset), group in _groups(comparisons).items():
        verdict, firm, basis = combine(group)
        shown = f"**{verdict}**" if firm and verdict != "inconclusive" else verdict
        seeds = min(c.n for c in group)
        lines.append(f"| {statement.get(claim, claim)} (`{claim}`) | {dataset} | {shown} | "
                     f"{'yes' if firm else 'no'} | {seeds} | {basis} | {_points(group)} |")
    return lines


def _points(group: list[Comparison]) -> str:
    """``holds`` / ``fails`` when every comparison agrees, else which ones hold and fail."""
    by = {p: [c.other for c in group if c.point == p] for p in ("holds", "fails")}
    missing = [c.other for c in group if not c.point]
    if not missing and not by["fails"]:
        return "holds"
    if not missing and not by["holds"]:
        return "fails"
    parts = [f"{p} vs {', '.join(o)}" for p, o in by.items() if o]
    return "; ".join(parts + ([f"no data vs {', '.join(missing)}"] if missing else []))


def _fmt(x: float) -> str:
    return "" if not math.isfinite(x) else format(x, ".4g")


def _details(claims: list[Claim], comparisons: list[Comparison]) -> list[str]:
    groups = _groups(comparisons)
    lines: list[str] = []
    for claim in claims:
        mine = [(d, g) for (c, d), g in groups.items() if c == claim.id]
        if not mine:
            continue
        where = f" ({claim.solver}, NFE {claim.at_nfe})" if claim.solver else ""
        header = ("| dataset | other | seeds | mean (method) | mean (other) | d | 95 % interval | threshold "
                  "| point | verdict | basis |")
        lines += [f"### `{claim.id}`: {claim.statement}", "",
                  (f"Source: {claim.source}. Metric: `{claim.metric}`{where}, lower is better; "
                   f"`{claim.method}` against each other method."), "",
                  header, "|---|---|---:|---:|---:|---:|---|---:|---|---|---|"]
        for dataset, group in mine:
            for c in group:
                ci = f"[{_fmt(c.lo)}, {_fmt(c.hi)}]" if math.isfinite(c.lo) else ""
                lines.append(f"| {dataset} | {c.other} | {c.n}{' paired' if c.paired and c.n else ''} | "
                             f"{_fmt(_mean(c.a))} | {_fmt(_mean(c.b))} | {_fmt(c.diff)} | {ci} | "
                             f"{_fmt(c.threshold)} | {c.point} | {c.verdict} | {c.basis} |")
        lines.append("")
    return lines


def write_claims(claims: list[Claim], comparisons: list[Comparison], out_dir: str | Path,
                 experiment: str) -> list[Path]:
    """Write ``claims.csv`` and ``claims.md`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    md = [f"# Claims of the paper checked on experiment `{experiment}`", "",
          "Generated by `python -m fmcore.report` from the experiment's MLflow runs; do not edit.", "",
          "## Verdicts", ""] + verdict_table(claims, comparisons) + ["", RULE_TEXT, "", "## Comparisons", ""]
    md += _details(claims, comparisons)
    md += ["Per-seed values and run-level detail: [claims.csv](claims.csv)."]
    return [atomic_write_text(out_dir / "claims.csv", format_csv(claims_frame(claims, comparisons))),
            atomic_write_text(out_dir / "claims.md", "\n".join(md) + "\n")]
