"""Read one experiment's training and evaluation runs from MLflow (docs/CONTRACTS.md).

Nothing is recomputed here: every number comes from ``mlflow.search_runs`` (last value of
each metric) or from ``MlflowClient.get_metric_history``. Per (dataset, method) the
report uses the latest *finished* evaluation run; its training run (tag
``fmrepro.train_run_id``, else ``mlflow.parentRunId``) supplies the git commit and the
data hash. An evaluation counts only if it evaluated the checkpoint that the *current*
training run of its pair (the latest one started) produced: same training run id, and the
same ``fmrepro.checkpoint_sha256`` where both runs carry it. Any other evaluation is
*stale* (the training was re-run since): it is left out, and ``ExperimentRuns.stale`` says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from fmcore.report.failures import reasons_from_artifact, reasons_from_tags
from fmcore.tracking.base import absolute_store_uri, redact_uri

__all__ = [
    "DEFAULT_TRACKING_URI",
    "EVAL_METRICS",
    "METHOD_ORDER",
    "ExperimentRuns",
    "ReportError",
    "collect_runs",
    "metric_history",
    "resolve_tracking_uri",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks")
RUN_KEY = ["dataset", "method", "seed"]  # one training run: a job and one of its seeds
METHOD_ORDER = ("fm_ot", "fm_vp", "ddpm", "score_ve", "scoreflow", "rectified_flow", "ot_cfm")
EVAL_METRICS = ("nll_bpd", "nll_bpd_se", "nll_bpd_k1", "nll_nats", "nll_nats_se", "quality", "nfe",
                "nfe_batch_size", "straightness")
_PROVENANCE_TAGS = {"git_commit": "fmrepro.git_commit", "data_hash": "fmrepro.data_hash",
                    "host": "fmrepro.host", "device": "fmrepro.device",
                    "checkpoint_sha256": "fmrepro.checkpoint_sha256"}


class ReportError(ValueError):
    """The report cannot be built (no store, no experiment, inconsistent input)."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.

    Raises:
        ReportError: a ``sqlite:///`` URI whose database file does not exist (MLflow would
            silently create an empty one).
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in STORE_SCHEMES:
        raise ReportError(f"{redact_uri(uri)}: not a tracking URI this report reads; expected one of "
                          f"{', '.join(s + ':' for s in STORE_SCHEMES)} (e.g. sqlite:///mlflow.db, "
                          "http://host:5000)")
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            raise ReportError(
                f"{uri}: no MLflow database at {db} (run the pipeline first, or pass --tracking-uri)")
    return uri


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@dataclass(frozen=True)
class ExperimentRuns:
    """What MLflow holds for one experiment.

    Attributes:
        experiment: experiment name.
        tracking_uri: where it was read from.
        train: one row per training run (``train_run_id, dataset, method, status``, tags).
        evaluations: one row per (dataset, method, seed): the latest finished evaluation run
            (``eval_run_id, train_run_id``, ``seed`` (tag ``fmrepro.seed``, 0 when absent),
            provenance, ``quality_metric``, ``stand_in``,
            ``EVAL_METRICS`` columns, ``metric_keys``: tuple of every metric it logged,
            ``failed_reasons``: failed part -> first error line, ``report/failures.py``).
        seen: every (dataset, method) with any training or evaluation run, sorted.
        notes: human-readable remarks (ignored unfinished or superseded runs).
        stale: (dataset, method) -> why its only evaluations were left out (they evaluated an
            earlier training run's checkpoint).
    """

    experiment: str
    tracking_uri: str
    train: pd.DataFrame
    evaluations: pd.DataFrame
    seen: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    stale: dict[tuple[str, str], str]


def _column(frame: pd.DataFrame, name: str, default: object = "") -> pd.Series:
    if name in frame.columns:
        return frame[name].where(frame[name].notna(), default)
    return pd.Series([default] * len(frame), index=frame.index, dtype=object)


def _iso(ts: object) -> str:
    return "" if pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def _method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _base_frame(runs: pd.DataFrame, stage: str) -> pd.DataFrame:
    sub = runs[_column(runs, "tags.fmrepro.stage") == stage]
    sub = sub.assign(_order=pd.to_datetime(sub["start_time"], utc=True)).sort_values(
        ["_order", "run_id"], kind="stable")
    out = pd.DataFrame({
        "run_id": sub["run_id"].astype(str),
        "dataset": _column(sub, "tags.fmrepro.dataset").astype(str),
        "method": _column(sub, "tags.fmrepro.method").astype(str),
        "seed": [int(v) if str(v).isdigit() else 0 for v in _column(sub, "tags.fmrepro.seed", "0")],
        "status": sub["status"].astype(str),
        "start_time": [_iso(t) for t in sub["start_time"]],
        "end_time": [_iso(t) for t in _column(sub, "end_time", None)],
    })
    for col, tag in _PROVENANCE_TAGS.items():
        out[col] = _column(sub, f"tags.{tag}").astype(str)
    return out.reset_index(drop=True)


def _current(evals: pd.DataFrame, train: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Keep the evaluations of each run's current training run and checkpoint (module docstring);
    a run is a (dataset, method, seed)."""
    latest = train.drop_duplicates(RUN_KEY, keep="last").set_index(RUN_KEY)
    keep, stale, current = [], {}, set()
    for row in evals.itertuples():
        run = (row.dataset, row.method, row.seed)
        if run not in latest.index:  # no training run recorded (e.g. a store filled by hand): trust it
            keep.append(True)
            current.add(run)
            continue
        cur = latest.loc[run]
        same_run = row.train_run_id == cur["run_id"]
        same_file = not (row.checkpoint_sha256 and cur["checkpoint_sha256"]) or \
            row.checkpoint_sha256 == cur["checkpoint_sha256"]
        keep.append(same_run and same_file)
        if keep[-1]:
            current.add(run)
        else:
            why = (f"evaluation run {row.run_id} evaluated training run {row.train_run_id}, but the current "
                   f"training run of {row.dataset}/{row.method} is {cur['run_id']} (status {cur['status']}, "
                   f"started {cur['start_time']}): re-run its evaluation" if not same_run else
                   f"evaluation run {row.run_id} evaluated a checkpoint with sha256 {row.checkpoint_sha256[:12]}, "
                   f"training run {cur['run_id']} finished with {cur['checkpoint_sha256'][:12]}: re-run its "
                   "evaluation")
            notes.append(f"stale: {why}")
            stale[run] = why
    evals = evals[keep] if len(evals) else evals
    for run in current:
        stale.pop(run, None)  # a current evaluation exists as well
    # keyed by (dataset, method); a stale seed among current ones is reported in the notes
    return evals, {(d, m): why for (d, m, _), why in stale.items()}


def _evaluations(runs: pd.DataFrame, train: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, dict]:
    evals = _base_frame(runs, "evaluate")
    sub = runs.set_index("run_id").loc[evals["run_id"]] if len(evals) else runs.iloc[0:0]
    evals["train_run_id"] = [
        str(a) if a else str(b) for a, b in zip(_column(sub, "tags.fmrepro.train_run_id"),
                                                 _column(sub, "tags.mlflow.parentRunId"), strict=True)
    ]
    evals["quality_metric"] = list(_column(sub, "tags.fmrepro.quality_metric").astype(str))
    evals["stand_in"] = list(_column(sub, "tags.fmrepro.stand_in").astype(str))
    for name in EVAL_METRICS:
        evals[name] = list(pd.to_numeric(_column(sub, f"metrics.{name}", float("nan")), errors="coerce"))
    tag_cols = [c for c in runs.columns if c.startswith("tags.fmrepro.failed")]
    evals["failed_reasons"] = [reasons_from_tags({c: row[c] for c in tag_cols}) for _, row in sub.iterrows()]
    metric_cols = [c for c in runs.columns if c.startswith("metrics.")]
    evals["metric_keys"] = [
        tuple(sorted(c[len("metrics."):] for c in metric_cols if pd.notna(row[c])))
        for _, row in sub.iterrows()
    ]
    for row in evals[evals["status"] != "FINISHED"].itertuples():
        notes.append(f"ignored evaluation run {row.run_id} ({row.dataset}/{row.method}): status {row.status}")
    evals = evals[evals["status"] == "FINISHED"]
    evals, stale = _current(evals, train, notes)
    superseded = evals[evals.duplicated(RUN_KEY, keep="last")]
    for row in superseded.itertuples():
        notes.append(f"superseded evaluation run {row.run_id} ({row.dataset}/{row.method}, seed {row.seed}): "
                     "a later one is used")
    evals = evals.drop_duplicates(RUN_KEY, keep="last")
    evals = evals.rename(columns={"run_id": "eval_run_id"})
    by_id = train.set_index("run_id")
    for col in _PROVENANCE_TAGS:  # the training run is the source of provenance; eval tags are a fallback
        evals[col] = [
            by_id.at[rid, col] if rid in by_id.index and by_id.at[rid, col] else own
            for rid, own in zip(evals["train_run_id"], evals[col], strict=True)
        ] if col != "checkpoint_sha256" else evals[col]
    return evals.reset_index(drop=True), stale


def collect_runs(experiment: str, tracking_uri: str) -> ExperimentRuns:
    """Read every training and evaluation run of ``experiment``.

    Raises:
        ReportError: the experiment does not exist in the store.
    """
    display, tracking_uri = tracking_uri, absolute_store_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise ReportError(f"{redact_uri(display)}: no MLflow experiment named {experiment!r} (known: {known})")
    with _tracking_uri(tracking_uri):
        runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="pandas")
    if runs.empty:
        runs = pd.DataFrame(columns=["run_id", "status", "start_time", "end_time"])
    notes: list[str] = []
    no_name = (_column(runs, "tags.fmrepro.dataset") == "") | (_column(runs, "tags.fmrepro.method") == "")
    untagged = runs[(_column(runs, "tags.fmrepro.stage") != "") & no_name]
    for run_id in untagged["run_id"]:
        notes.append(f"ignored run {run_id}: tag fmrepro.dataset or fmrepro.method missing")
    runs = runs.drop(untagged.index)
    train = _base_frame(runs, "train")
    evaluations, stale = _evaluations(runs, train, notes)
    for reasons, run_id in zip(evaluations["failed_reasons"], evaluations["eval_run_id"], strict=True):
        if any(not why for why in reasons.values()):  # a run older than the fmrepro.failed.<part> tags
            logged = reasons_from_artifact(client, run_id)
            reasons.update({p: logged.get(p, "") for p, why in reasons.items() if not why})
    pairs = {(d, m) for d, m in zip(train["dataset"], train["method"], strict=True)}
    pairs |= {(d, m) for d, m in zip(*(_base_frame(runs, "evaluate")[c] for c in ("dataset", "method")),
                                     strict=True)}
    seen = tuple(sorted(pairs, key=lambda p: (p[0], _method_key(p[1]))))
    return ExperimentRuns(experiment, display, train, evaluations, seen, tuple(notes), stale)


def metric_history(client: MlflowClient, run_id: str, key: str) -> pd.DataFrame:
    """Full history of one metric as a frame ``step, value`` sorted by step.

    A step logged twice (a resumed run) keeps its latest value.
    """
    rows = [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]
    frame = pd.DataFrame(rows, columns=["step", "timestamp", "value"])
    frame = frame.sort_values(["step", "timestamp"], kind="stable").drop_duplicates("step", keep="last")
    return frame[["step", "value"]].reset_index(drop=True)
