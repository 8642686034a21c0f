"""MLflow adapter: the only module that talks to MLflow (docs/CONTRACTS.md, "MLflow").

A :class:`Tracker` records params, tags, metrics (with steps) and artifacts of one MLflow
run. All MLflow calls happen on a background thread, so neither MLflow's start-up cost nor
a slow or unreachable tracking store ever blocks training. When the store is unavailable
(server down, SQLite "database is locked"), the tracker says so once, keeps every record
in memory and in a JSONL spool file, retries with back-off, and delivers the records in
order when the store answers again, or at :meth:`Tracker.close`. Records still pending at
exit stay in the spool; ``python -m fmcore.tracking flush SPOOL`` delivers them later.

Typical use (training and evaluation alike)::

    tracker = start_run("smoke", "eval/digits/fm_ot", tags={...}, parent_run_id=train_id,
                        spool_path=run_dir / "mlflow_spool.jsonl")
    tracker.log_metrics({"nll_bpd": 1.2}, step=0)
    tracker.log_npz("sweep.npz", nfe=..., error=...)
    tracker.close()
"""


from fmcore.tracking.base import (
    DEFAULT_URI,
    MASK,
    check_cluster_store,
    flatten_params,
    git_commit,
    mask_secret_tree,
    mask_secrets,
    redact_uri,
    tracking_uri,
)
from fmcore.tracking.tracker import NullTracker, Tracker, flush_spool, start_run

__all__ = [
    "DEFAULT_URI",
    "MASK",
    "NullTracker",
    "check_cluster_store",
    "Tracker",
    "flatten_params",
    "flush_spool",
    "git_commit",
    "mask_secret_tree",
    "mask_secrets",
    "redact_uri",
    "start_run",
    "tracking_uri",
]
