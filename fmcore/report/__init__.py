"""Reports: regenerate the paper's Table 1 and Figures 4-7 from MLflow (docs/reports.md).

``build_report`` reads one experiment's training and evaluation runs (no metric is
recomputed), joins the paper's values, and writes ``reports/<experiment>/``:
``table1.{csv,md,tex}``, ``fig4..fig7`` as PNG and PDF, and ``README.md``.
"""

from fmcore.report.build import Report, build_report
from fmcore.report.collect import ReportError, collect_runs, resolve_tracking_uri
from fmcore.report.paper import MODEL_TO_METHOD, load_paper_table
from fmcore.report.table import NATS_COLUMNS, TABLE1_COLUMNS, Table1, build_table1

__all__ = [
    "MODEL_TO_METHOD",
    "NATS_COLUMNS",
    "TABLE1_COLUMNS",
    "Report",
    "ReportError",
    "Table1",
    "build_report",
    "build_table1",
    "collect_runs",
    "load_paper_table",
    "resolve_tracking_uri",
]
