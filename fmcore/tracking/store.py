"""Delivery of spooled tracking records to an MLflow store (every call may raise when it is down)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["BATCH", "Store"]

BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_BATCH = 100  # ... and of params


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
            # would block for minutes).
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
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
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_root(self.uri))
        except MlflowException:  # created concurrently by another job
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def deliver(self, run_id: str | None, rec: dict) -> str | None:
        from mlflow.entities import Metric, Param, RunTag

        op = rec["op"]
        if op == "start":
            run = self.client.create_run(self.experiment_id(rec["experiment"]), run_name=rec["run_name"],
                                         tags=rec["tags"])
            run_id = run.info.run_id
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
        elif op == "artifact":
            self.client.log_artifact(run_id, rec["path"], artifact_path=rec.get("artifact_path"))
        elif op == "end":
            self.client.set_terminated(run_id, status=rec["status"])
        else:
            raise ValueError(f"unknown spool record op {op!r}")
        return run_id
