"""Expected number of function evaluations (NFE) per job, for the cost model.

Three sources, best first: the user's finished evaluations of the experiment in MLflow
(``mlflow_nfe``: measured on their own networks), the paper's Table 1 (``paper_nfe``: the
paper gives sampling NFE only, so the NLL's NFE is assumed equal), else a number the user
states. ``runtime: auto`` / ``shards: auto`` use the paper and the stated number only, so the
workflow's DAG depends on files, not on what the tracking server holds at planning time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ExpectedNFE", "expected_nfe", "mlflow_nfe", "paper_nfe"]


@dataclass(frozen=True)
class ExpectedNFE:
    """Function evaluations of one dopri5 solve (of a batch) per evaluation part.

    ``sampling``/``nll`` at the ``nfe``/``nll`` tolerances (Table 1); the others at their own
    sections' tolerances where a run measured them, else None (= ``sampling``): the sweep's
    reference solve, the during-training samples, Fig. 6's trajectories and Fig. 4's snapshots.
    """

    sampling: float
    nll: float
    source: str
    sweep_reference: float | None = None
    during_training: float | None = None
    trajectories: float | None = None
    snapshots: float | None = None

    def of(self, part: str) -> float:
        """The NFE of ``part`` (``sampling`` where not measured)."""
        value = getattr(self, part)
        return self.sampling if value is None else float(value)



def paper_nfe() -> dict[tuple[str, str], ExpectedNFE]:
    """(dataset, method) -> NFE of the paper's Table 1 (the NLL's NFE assumed equal)."""
    from fmcore.report.paper import MODEL_TO_METHOD, load_paper_table

    out: dict[tuple[str, str], ExpectedNFE] = {}
    for row in load_paper_table().itertuples():
        method = MODEL_TO_METHOD.get(row.model)
        if method and not math.isnan(row.nfe):
            out[(row.dataset, method)] = ExpectedNFE(float(row.nfe), float(row.nfe),
                                                     "paper Table 1 (NLL NFE assumed equal)")
    return out


def mlflow_nfe(experiment: str) -> dict[tuple[str, str], ExpectedNFE]:
    """NFE per (dataset, method) from the latest finished evaluation of each job of ``experiment``
    (its ``nfe``, ``nll_nfe`` and per-part ``<part>/nfe`` metrics; empty if there are none)."""
    from fmcore.tracking.base import absolute_store_uri, fail_fast_http, tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return {}
    fail_fast_http(10)
    try:
        from mlflow import MlflowClient

        client = MlflowClient(absolute_store_uri(uri))
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        runs = client.search_runs([exp.experiment_id], "tags.`fmrepro.stage` = 'evaluate' and "
                                  "attributes.status = 'FINISHED'", order_by=["attributes.start_time ASC"])
    except Exception:  # noqa: BLE001 - no store, no observation: the planner falls back to the paper
        return {}
    out = {}
    for run in runs:  # oldest first: the latest evaluation of a job wins
        m, tags = run.data.metrics, run.data.tags
        if "nfe" in m:
            out[(tags.get("fmrepro.dataset"), tags.get("fmrepro.method"))] = ExpectedNFE(
                m["nfe"], m.get("nll_nfe", m["nfe"]), "your MLflow runs",
                sweep_reference=m.get("sweep/reference_nfe"), during_training=m.get("during_training/nfe"),
                trajectories=m.get("trajectories/nfe"), snapshots=m.get("snapshots/nfe"))
    return out


def expected_nfe(experiment: str, *, use_mlflow: bool = True) -> dict[tuple[str, str], ExpectedNFE]:
    """The paper's NFE, overridden by the user's MLflow measurements where ``use_mlflow``."""
    out = paper_nfe()
    if use_mlflow:
        out.update(mlflow_nfe(experiment))
    return out
