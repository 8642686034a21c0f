"""The paper's Table 1 (Lipman et al., 2023), shipped as package data.

``paper_table1.csv`` is a copy of the paper's Table 1: NLL in bits/dim, FID and the NFE
of the adaptive dopri5 solver, per dataset and model. Model names map to this project's
method ids through ``MODEL_TO_METHOD``; the ImageNet-128 GAN rows have no method id
(``method`` is empty): they are paper-only baselines that the report lists separately
and never places in a result column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = [
    "MODEL_TO_METHOD",
    "PAPER_CSV",
    "load_paper_table",
    "paper_markdown",
    "paper_only_rows",
]

PAPER_CSV = Path(__file__).with_name("paper_table1.csv")

MODEL_TO_METHOD: dict[str, str] = {
    "DDPM": "ddpm",
    "Score Matching": "score_ve",
    "ScoreFlow": "scoreflow",
    "FM w/ Diffusion": "fm_vp",
    "FM w/ OT": "fm_ot",
}
_COLUMNS = ["dataset", "model", "nll_bpd", "fid", "nfe"]


def load_paper_table(path: str | Path = PAPER_CSV) -> pd.DataFrame:
    """Read the paper's Table 1.

    Args:
        path: CSV with columns ``dataset, model, nll_bpd, fid, nfe``.

    Returns:
        Frame with those columns plus ``method`` (project method id, ``""`` for
        paper-only rows such as the GANs); numbers as float (NaN where the paper has none).

    Raises:
        ValueError: the file is missing columns or has a duplicated (dataset, method).
    """
    path = Path(path)
    table = pd.read_csv(path, dtype={"dataset": str, "model": str}, keep_default_na=True)
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {_COLUMNS}")
    for col in ("nll_bpd", "fid", "nfe"):
        table[col] = pd.to_numeric(table[col], errors="raise").astype(float)
    table["method"] = table["model"].map(MODEL_TO_METHOD).fillna("")
    mapped = table[table["method"] != ""]
    dup = mapped[mapped.duplicated(["dataset", "method"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise ValueError(f"{path}: duplicated row for dataset={first.dataset!r} method={first.method!r}")
    return table[_COLUMNS + ["method"]]


def paper_only_rows(paper: pd.DataFrame, datasets: list[str] | None = None) -> pd.DataFrame:
    """The paper's rows without a project method id (the ImageNet-128 GANs).

    Args:
        paper: frame from ``load_paper_table``.
        datasets: keep only these datasets (all when None).
    """
    rows = paper[paper["method"] == ""]
    if datasets is not None:
        rows = rows[rows["dataset"].isin(datasets)]
    return rows.reset_index(drop=True)


def _cell(value: float, fmt: str) -> str:
    return "" if pd.isna(value) else format(value, fmt)


def paper_markdown(paper: pd.DataFrame | None = None) -> str:
    """The paper's Table 1 as a Markdown table (NLL and FID to 2 decimals, NFE as integer).

    Args:
        paper: frame from ``load_paper_table`` (read from the package when None).
    """
    paper = load_paper_table() if paper is None else paper
    lines = [
        "| dataset | model | method id | NLL (bits/dim) | FID | NFE |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in paper.itertuples(index=False):
        method = f"`{row.method}`" if row.method else "(paper only)"
        lines.append(
            f"| {row.dataset} | {row.model} | {method} | {_cell(row.nll_bpd, '.2f')} | "
            f"{_cell(row.fid, '.2f')} | {_cell(row.nfe, '.0f')} |"
        )
    return "\n".join(lines) + "\n"
