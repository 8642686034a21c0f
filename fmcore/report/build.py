"""Build ``reports/<experiment>/`` from MLflow: tables, figures, README (one call)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from fmcore.io import atomic_write_text
from fmcore.report.artifacts import gather_figure_data
from fmcore.report.claims import CLAIMS_PATH, evaluate_claims, load_claims
from fmcore.report.claims_inputs import from_mlflow
from fmcore.report.claims_render import verdict_table, write_claims
from fmcore.report.collect import collect_runs
from fmcore.report.figures import draw_figures
from fmcore.report.paper import load_paper_table
from fmcore.report.plot_data import write_plot_data
from fmcore.report.readme import dvc_data_hashes, render_readme
from fmcore.report.table import Table1, build_table1, format_csv
from fmcore.report.table_format import latex_table, markdown_table
from fmcore.tracking.base import absolute_store_uri, redact_uri

__all__ = ["Report", "build_report"]


@dataclass(frozen=True)
class Report:
    """What ``build_report`` wrote.

    Attributes:
        out_dir: the report directory.
        table: Table 1 as written.
        files: every written file.
        warnings: missing runs, failed evaluation parts (also at the top of the README).
        notes: skipped artifacts, ignored or superseded runs.
    """

    out_dir: Path
    table: Table1
    files: list[Path]
    warnings: list[str]
    notes: list[str]


def build_report(experiment: str, tracking_uri: str, out_dir: str | Path, *,
                 expected: list[tuple[str, str]] | None = None, data_dir: str = "data/prepared",
                 dvc_lock: str | Path = "dvc.lock", command: str = "python -m fmcore.report",
                 figures: bool = True, claims_path: str | Path = CLAIMS_PATH) -> Report:
    """Read ``experiment`` from MLflow and write its report into ``out_dir``.

    Args:
        experiment: MLflow experiment name.
        tracking_uri: MLflow tracking URI (``collect.resolve_tracking_uri``).
        out_dir: destination directory (created).
        expected: rows in order (from the params' jobs); None = every (dataset, method)
            with a training or evaluation run in MLflow, sorted.
        data_dir: prepared-data root, to find the datasets' DVC hashes in ``dvc_lock``.
        dvc_lock: path of ``dvc.lock`` (optional file).
        command: the command line quoted in the README.
        figures: also draw Figures 4-7 (False: tables and README only, e.g. a quick check).

    Raises:
        ReportError: no such store or experiment.
        ClaimsError: the claims file is invalid.
    """
    out_dir = Path(out_dir)
    claims = load_claims(claims_path)  # a bad file fails before any store access
    runs = collect_runs(experiment, tracking_uri)
    notes = list(runs.notes)
    if expected is None:
        expected = list(runs.seen)
    else:
        ignored = [f"{d}/{m}" for d, m in runs.seen if (d, m) not in expected]
        if ignored:
            notes.append(f"runs in MLflow but not in the params' jobs (not reported): {', '.join(ignored)}")
    paper = load_paper_table()
    table = build_table1(expected, runs.evaluations, paper)
    warnings = []
    missing = [p for p in table.missing if p not in runs.stale]
    if missing:
        listed = ", ".join(f"{d}/{m}" for d, m in missing)
        warnings.append(f"{len(missing)} expected run(s) have no finished evaluation run in MLflow "
                        f"experiment {experiment!r}: {listed} (shown as empty rows)")
    for (d, m), why in runs.stale.items():
        if (d, m) in table.missing:
            warnings.append(f"{d}/{m}: left empty, its evaluation is stale ({why})")
    if table.failures:
        listed = ", ".join(f"{f.dataset}/{f.method} {f.part} [{f.mark}]" for f in table.failures)
        warnings.append(f"{len(table.failures)} evaluation part(s) failed: {listed} (cells marked "
                        "`failed [n]`; the reasons are the footnotes under Table 1; re-run "
                        "`python -m fmcore.evaluate run`)")
    table_md = markdown_table(table, experiment)
    files = [atomic_write_text(out_dir / "table1.csv", format_csv(table.rows))]
    if not table.nats.empty:
        files.append(atomic_write_text(out_dir / "table1_nll_nats.csv", format_csv(table.nats)))
    if table.seeded:
        files.append(atomic_write_text(out_dir / "table1_seeds.csv", format_csv(table.seeds)))
    files.append(atomic_write_text(out_dir / "table1.md", table_md))
    files.append(atomic_write_text(out_dir / "table1.tex", latex_table(table, experiment)))
    if figures:
        with tempfile.TemporaryDirectory(prefix="fmrepro-report-") as tmp:
            data = gather_figure_data(MlflowClient(absolute_store_uri(tracking_uri)), runs.evaluations, expected, Path(tmp))
        notes += data.notes
        files += draw_figures(data, out_dir)
        files += write_plot_data(MlflowClient(absolute_store_uri(tracking_uri)), data, runs.evaluations, out_dir)
    rank = {pair: i for i, pair in enumerate(expected)}  # claims in the report's row order
    ev = runs.evaluations
    keys = [rank.get((d, m)) for d, m in zip(ev["dataset"], ev["method"], strict=True)]
    reported = ev.assign(_rank=keys).dropna(subset=["_rank"]).sort_values("_rank", kind="stable")
    reported = reported.drop(columns="_rank")
    comparisons = evaluate_claims(claims, from_mlflow(MlflowClient(absolute_store_uri(tracking_uri)), reported))
    files += write_claims(claims, comparisons, out_dir, experiment)
    datasets = list(dict.fromkeys(d for d, _ in expected))
    readme = render_readme(experiment=experiment, command=command, tracking_uri=redact_uri(tracking_uri),
                           table=table, table_md=table_md, evaluations=runs.evaluations, paper=paper, warnings=warnings,
                           notes=notes, dvc=dvc_data_hashes(Path(dvc_lock), data_dir, datasets),
                           figures=figures, verdicts=verdict_table(claims, comparisons))
    files.append(atomic_write_text(out_dir / "README.md", readme))
    return Report(out_dir, table, files, warnings, notes)
