"""Expected number of function evaluations (NFE) per job, for the cost model.

Three sources, best first: the user's finished evaluations of the experiment in MLflow
(``mlflow_nfe``: measured on their own networks), the paper's Table 1 (``paper_nfe``: the
paper gives sampling NFE only, so the NLL's NFE is assumed equal), else a number the user
states. ``runtime: auto`` / ``shards: auto`` use the paper and the stated number only, so the
workflow's DAG depends on files, not on what the tracking server holds at planning time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["NFE", "expected_nfe", "mlflow_nfe", "paper_nfe"]

NFE = tuple[float, float, str]  # (sampling NFE, NLL NFE, source)


def paper_nfe() -> dict[tuple[str, str], NFE]:
    """(dataset, method) -> NFE of the paper's Table 1 (the NLL's NFE assumed equal)."""
    from fmcore.report.paper import MODEL_TO_METHOD, load_paper_table

    out: dict[tuple[str, str], NFE] = {}
    for row in load_paper_table().itertuples():
        method = MODEL_TO_METHOD.get(row.model)
        if method and not math.isnan(row.nfe):
            out[(row.dataset, method)] = (float(row.nfe), float(row.nfe), "paper Table 1 (NLL NFE assumed equal)")
    return out


def mlflow_nfe(experiment: str) -> dict[tuple[str, str], NFE]:
    """Mean NFE of the user's finished evaluations of ``experiment`` (empty if there are none)."""
    from fmcore.tracking import tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return {}
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        runs = client.search_runs([exp.experiment_id], "tags.`fmrepro.stage` = 'evaluate' and "
                                  "attributes.status = 'FINISHED'", order_by=["attributes.start_time ASC"])
    except Exception:  # noqa: BLE001 - no store, no observation: the planner falls back to the paper
        return {}
    out = {}
    for run in runs:
        m, tags = run.data.metrics, run.data.tags
        if "nfe" in m:
            nll_nfe = m.get("nll_nfe", m["nfe"])
            out[(tags.get("fmrepro.dataset"), tags.get("fmrepro.method"))] = (m["nfe"], nll_nfe, "your MLflow runs")
    return out


def expected_nfe(experiment: str, *, use_mlflow: bool = True) -> dict[tuple[str, str], NFE]:
    """The paper's NFE, overridden by the user's MLflow measurements where ``use_mlflow``."""
    out = paper_nfe()
    if use_mlflow:
        out.update(mlflow_nfe(experiment))
    return out
