"""Markdown and LaTeX (booktabs) renderings of Table 1, deterministic to the byte.

Numbers use fixed formats (``FORMATS``); ids are shortened to 12 characters (the CSV keeps
them whole). The best (lowest) value per dataset and column is bold when the column has at
least two values for that dataset, as in the paper. A caption states where every column
comes from, that stand-in quality metrics are not FID, which runs are missing, and (footnotes)
why a cell of a failed evaluation part is empty.
"""

from __future__ import annotations

import math

import pandas as pd

from fmcore.report.table import LOWER_IS_BETTER, Table1

__all__ = ["FORMATS", "caption", "latex_table", "markdown_table"]

FORMATS = {
    "nll_bpd": ".3f", "nll_bpd_se": ".3f", "quality": ".3f", "nfe": ".1f", "nfe_ratio_vs_ddpm": ".2f",
    "paper_nll_bpd": ".2f", "paper_fid": ".2f", "paper_nfe": ".0f", "nll_nats": ".3f", "nll_nats_se": ".3f",
    "nll_bpd_k1": ".3f", "nfe_batch": ".0f",
    "nll_bpd_ci95": ".3f", "quality_ci95": ".3f", "nfe_ci95": ".1f", "nll_nats_ci95": ".3f",
}
_IDS = ("mlflow_run_id", "git_commit", "data_hash")
_ID_CHARS = 12
_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _cells(frame: pd.DataFrame) -> list[list[str]]:
    """Formatted text of every cell, plus a parallel bold mask applied by the renderers."""
    out = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            if col in FORMATS:
                cells.append("" if value is None or math.isnan(value) else format(value, FORMATS[col]))
            elif col in _IDS:
                cells.append(";".join(v[:_ID_CHARS] for v in str(value).split(";")))  # one per seed
            else:
                cells.append(str(value))
        out.append(cells)
    return out


def _bold_mask(frame: pd.DataFrame, cells: list[list[str]]) -> list[list[bool]]:
    mask = [[False] * len(frame.columns) for _ in cells]
    for j, col in enumerate(frame.columns):
        if col not in LOWER_IS_BETTER:
            continue
        for _, idx in frame.groupby("dataset", sort=False).indices.items():
            shown = [(i, float(cells[i][j])) for i in idx if cells[i][j]]
            if len(shown) < 2:
                continue
            best = min(v for _, v in shown)
            for i, v in shown:
                mask[i][j] = v == best
    return mask


def _failed_marks(frame: pd.DataFrame, cells: list[list[str]], table: Table1) -> None:
    """Write ``failed`` + footnote mark into the (empty) cells a failed evaluation part left."""
    rows = {(d, m): i for i, (d, m) in enumerate(zip(frame["dataset"], frame["method"], strict=True))}
    cols = {c: j for j, c in enumerate(frame.columns)}
    for f in table.failures:
        i = rows.get((f.dataset, f.method))
        for col in f.columns:
            if i is not None and col in cols and not cells[i][cols[col]]:
                cells[i][cols[col]] = f"failed [{f.mark}]"


def _shown_missing(table: Table1) -> str:
    return ", ".join(f"{d}/{m}" for d, m in table.missing)


def caption(table: Table1, experiment: str) -> list[str]:
    """Caption sentences (plain text with `code` marks) shared by the Markdown and LaTeX tables."""
    lines = [
        f"Table 1 of experiment `{experiment}`. Result columns are read from the MLflow "
        "evaluation runs; `paper_*` columns are Lipman et al. (2023), Table 1 (empty where the "
        "paper has no such row). Bold: lowest value per dataset and column.",
    ]
    if table.stand_ins:
        names = ", ".join(f"`{q}`" for q in table.stand_ins)
        verb = "are stand-ins" if len(table.stand_ins) > 1 else "is a stand-in"
        lines.append(f"`quality` is the metric named in `quality_metric`; {names} {verb}, "
                     "not Inception FID, and not comparable with `paper_fid`.")
    else:
        lines.append("`quality` is the metric named in `quality_metric` (`fid` = Inception FID).")
    if not table.nats.empty:
        two_d = ", ".join(dict.fromkeys(table.nats["dataset"]))
        lines.append(f"`nll_bpd` is empty for the 2D dataset(s) {two_d}: their NLL is in nats "
                     "(second table), not bits/dim.")
    lines.append("`nfe`: mean dopri5 evaluations per sample batch of `nfe_batch` samples (the adaptive "
                 "step is shared by a batch, so NFE depends on it). `nll_bpd_k1`: the one-sample "
                 "dequantization estimate beside `nll_bpd`'s K-sample one (empty when K = 1); with a "
                 "Hutchinson divergence the K-sample estimate is not a strict bound (docs/paper.md).")
    if table.seeded:
        lines.append("Rows with `n_seeds` > 1: `nll_bpd`, `quality`, `nfe` are means over seeds, `*_ci95` the "
                     "half-width of their 95 % t-interval (empty for one seed), `nll_bpd_se` the mean of the "
                     "runs' own standard errors; every seed's values and run ids are in `table1_seeds.csv`.")
    if table.failures:
        lines.append("Cells marked `failed [n]`: an evaluation part failed; footnotes:")
        lines += [f.footnote() for f in table.failures]
    if table.missing:
        lines.append(f"Missing (no finished evaluation run in MLflow; empty cells): {_shown_missing(table)}.")
    lines.append(f"Ids shortened to {_ID_CHARS} characters; full values in `table1.csv`.")
    return lines


def _md_rows(frame: pd.DataFrame, table: Table1) -> list[str]:
    cells = _cells(frame)
    mask = _bold_mask(frame, cells)
    _failed_marks(frame, cells, table)
    align = ["---:" if c in FORMATS else "---" for c in frame.columns]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "|".join(align) + "|"]
    for row, bold in zip(cells, mask, strict=True):
        shown = [f"**{c}**" if b else c for c, b in zip(row, bold, strict=True)]
        lines.append("| " + " | ".join(s.replace("|", "\\|") for s in shown) + " |")
    return lines


def markdown_table(table: Table1, experiment: str) -> str:
    """Table 1 (and the 2D NLL table in nats, if any) as Markdown."""
    lines = _md_rows(table.rows, table) + [""] + caption(table, experiment)
    if not table.nats.empty:
        lines += ["", f"NLL of the 2D dataset(s), in nats per sample (experiment `{experiment}`):", ""]
        lines += _md_rows(table.nats, table)
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def _tex_caption(sentence: str) -> str:
    parts = sentence.split("`")
    return "".join(_tex(p) if i % 2 == 0 else r"\texttt{" + _tex(p) + "}" for i, p in enumerate(parts))


def _tex_tabular(frame: pd.DataFrame, table: Table1) -> list[str]:
    cells = _cells(frame)
    mask = _bold_mask(frame, cells)
    _failed_marks(frame, cells, table)
    spec = "".join("r" if c in FORMATS else "l" for c in frame.columns)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_tex(c) for c in frame.columns) + r" \\", r"\midrule"]
    previous = None
    for row, bold, dataset in zip(cells, mask, frame["dataset"], strict=True):
        if previous is not None and dataset != previous:
            lines.append(r"\midrule")
        previous = dataset
        shown = [rf"\textbf{{{_tex(c)}}}" if b else _tex(c) for c, b in zip(row, bold, strict=True)]
        lines.append(" & ".join(shown) + r" \\")
    return lines + [r"\bottomrule", r"\end{tabular}"]


def latex_table(table: Table1, experiment: str) -> str:
    """Table 1 as a booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    label = "".join(ch if ch.isalnum() else "-" for ch in experiment)
    lines = [f"% Table 1 of experiment {experiment}, generated by python -m fmcore.report; do not edit.",
             "% Requires \\usepackage{booktabs} and \\usepackage{graphicx} (\\resizebox).",
             r"\begin{table}[t]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}",
             r"\caption{" + " ".join(_tex_caption(s) for s in caption(table, experiment)) + "}",
             rf"\label{{tab:table1-{label}}}"]
    lines += [r"\resizebox{\textwidth}{!}{%"] + _tex_tabular(table.rows, table) + ["}", r"\end{table}"]
    if not table.nats.empty:
        lines += ["", r"\begin{table}[t]", r"\centering", r"\scriptsize",
                  r"\caption{" + _tex_caption(f"NLL of the 2D dataset(s) of experiment `{experiment}`, "
                                              "in nats per sample (lower is better).") + "}",
                  rf"\label{{tab:nll-nats-{label}}}"]
        lines += _tex_tabular(table.nats, table) + [r"\end{table}"]
    return "\n".join(lines) + "\n"
