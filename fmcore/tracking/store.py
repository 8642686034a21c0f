"""Delivery of spooled tracking records to an MLflow store (every call may raise when it is down)."""

from __future__ import annotations

import fcntl
from pathlib import Path

from fmcore.tracking.base import fail_fast_http

__all__ = ["BATCH", "START_KEY", "Store"]

BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_BATCH = 100  # ... and of params
# Tag with the start record's random key: a create_run whose answer was lost (server killed,
# request timed out after the commit) is found again on retry instead of being created twice.
START_KEY = "fmrepro.start_key"
# A model-training experiment ("Machine learning" in MLflow 3's UI; which page the UI opens still
# follows the browser's own "GenAI | Model training" switch, docs/workflow.md "MLflow UI").
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def _artifact_root(uri: str) -> str | None:
    """``mlartifacts/`` beside a SQLite store (absolute ``file:`` URI); None for servers."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
    return (db.resolve().parent / "mlartifacts").as_uri()


class Store:
    """Delivers spooled records to MLflow; every method may raise when the store is unavailable."""

    def __init__(self, uri: str) -> None:
        if uri.startswith(("http://", "https://")):
            # Fail fast and let the tracker's own back-off retry (MLflow's default retries
            # would block for minutes). A down server refuses at once; the timeout only bounds
            # a slow one: 30 s, since a server catching up after a restart with 32 writers'
            # backlogs answers a 1000-metric batch in >5 s, and a request cut off by the
            # timeout still commits, so each retry added load (docs/faults.md).
            fail_fast_http(30)
        from mlflow import MlflowClient

        self.uri = uri
        if not uri.startswith("sqlite:///"):
            self.client = MlflowClient(tracking_uri=uri)
        else:
            # Two jobs creating the same SQLite store at once corrupt its schema migration
            # ("table _alembic_tmp_... already exists"): serialise the first touch.
            db = Path(uri[len("sqlite:///"):])
            db.parent.mkdir(parents=True, exist_ok=True)
            with open(db.with_name(db.name + ".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self.client = MlflowClient(tracking_uri=uri)
                    self.client.search_experiments(max_results=1)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(KIND_TAG) != KIND:  # created before this tag existed
                self.client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_root(self.uri),
                                                 tags={KIND_TAG: KIND})
        except MlflowException:  # created concurrently by another job
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _started(self, experiment_id: str, key: str | None) -> str | None:
        """The run an earlier attempt of this start record created, if any."""
        if not key:
            return None
        runs = self.client.search_runs([experiment_id], f"tags.`{START_KEY}` = '{key}'", max_results=1)
        return runs[0].info.run_id if runs else None

    def deliver(self, run_id: str | None, rec: dict) -> str | None:
        from mlflow.entities import Metric, Param, RunTag

        op = rec["op"]
        if op == "start":
            exp_id = self.experiment_id(rec["experiment"])
            run_id = self._started(exp_id, rec.get("key")) if rec.get("attempted") else None
            if run_id is None:
                rec["attempted"] = True  # (kept in the spool: a later process searches too)
                tags = {**rec["tags"], **({START_KEY: rec["key"]} if rec.get("key") else {})}
                run_id = self.client.create_run(exp_id, run_name=rec["run_name"], tags=tags).info.run_id
            items = sorted(rec["params"].items())
            for i in range(0, len(items), _PARAM_BATCH):
                self.client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + _PARAM_BATCH]])
        elif op == "resume":
            self.client.update_run(rec["run_id"], status="RUNNING")
            run_id = rec["run_id"]
        elif op == "metrics":
            ms = [Metric(k, float(v), rec["ts"], rec["step"]) for k, v in rec["values"].items()]
            self.client.log_batch(run_id, metrics=ms)
        elif op == "tags":
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in rec["values"].items()])
        elif op == "input":
            from mlflow.entities import Dataset, DatasetInput, InputTag

            ds = Dataset(name=rec["name"], digest=rec["digest"][:36], source_type="local",
                         source=rec["source"], schema=None, profile=None)
            context = InputTag("mlflow.data.context", rec["context"])
            self.client.log_inputs(run_id, [DatasetInput(ds, [context])])
        elif op == "artifact":
            self.client.log_artifact(run_id, rec["path"], artifact_path=rec.get("artifact_path"))
        elif op == "end":
            self.client.set_terminated(run_id, status=rec["status"])
        else:
            raise ValueError(f"unknown spool record op {op!r}")
        return run_id
