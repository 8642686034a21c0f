"""Failed evaluation parts: which report cells they empty, and the footnote that says why.

An evaluation run whose part could not be computed (an ODE solve failed, no periodic
checkpoints, ...) carries the tag ``fmrepro.failed_parts`` (comma list) and, per part,
``fmrepro.failed.<part>`` = the first line of the error (``fmcore/evaluation/runner.py``).
Runs logged before that tag existed have the message only in their ``metrics.json``
artifact (``failed``: part -> message), read as a fallback. The report never shows such a
cell as a silent blank: the cell reads ``failed`` with a footnote mark, and the footnote
names the part, the evaluation run id and the first error line.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

from mlflow import MlflowClient

__all__ = ["FIGURE_PARTS", "PART_COLUMNS", "Failure", "failures_of", "first_line", "reasons_from_artifact",
           "reasons_from_tags"]

PART_COLUMNS = {  # Table 1 columns a part fills (2D datasets: the NLL in nats instead of bits/dim)
    "nll": ("nll_bpd", "nll_bpd_se"),
    "quality": ("quality", "nfe", "nfe_ratio_vs_ddpm"),
}
NATS_PART_COLUMNS = {"nll": ("nll_nats", "nll_nats_se")}
FIGURE_PARTS = {"snapshots": "Fig. 4", "during_training": "Fig. 5", "trajectories": "Fig. 6",
                "sweep": "Fig. 7"}
_LIMIT = 300


def first_line(text: object, limit: int = _LIMIT) -> str:
    """First non-empty line of an error message, at most ``limit`` characters."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "no message recorded")
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class Failure:
    """One failed evaluation part of one (dataset, method).

    Attributes:
        mark: footnote number (1, 2, ... in report row order).
        dataset: dataset name.
        method: method id.
        part: evaluation part (``nll``, ``quality``, ``sweep``, ...).
        run_id: the evaluation run that recorded the failure.
        reason: first line of the error.
        columns: Table 1 / 2D-table columns left empty by it (none for figure-only parts).
    """

    mark: int
    dataset: str
    method: str
    part: str
    run_id: str
    reason: str
    columns: tuple[str, ...]

    def footnote(self) -> str:
        """``[n] dataset/method: part `p` failed in evaluation run `id`: reason`` (caption text)."""
        where = f"; {FIGURE_PARTS[self.part]} has no data for it" if self.part in FIGURE_PARTS else ""
        reason = self.reason.replace("`", "'")
        return (f"[{self.mark}] {self.dataset}/{self.method}: evaluation part `{self.part}` failed in run "
                f"`{self.run_id}`{where}: {reason}")


def reasons_from_tags(tags: dict[str, object]) -> dict[str, str]:
    """Failed part -> first error line, from one run's tags (``tags.``-prefixed columns or plain keys).

    A part named in ``fmrepro.failed_parts`` without its ``fmrepro.failed.<part>`` tag gets "".
    """
    plain = {k.removeprefix("tags."): v for k, v in tags.items() if isinstance(v, str) and v}
    parts = [p.strip() for p in plain.get("fmrepro.failed_parts", "").split(",") if p.strip()]
    return {p: first_line(plain[f"fmrepro.failed.{p}"]) if plain.get(f"fmrepro.failed.{p}") else ""
            for p in parts}


def reasons_from_artifact(client: MlflowClient, run_id: str) -> dict[str, str]:
    """Failed part -> first error line, from the run's ``metrics.json`` artifact (empty if unreadable)."""
    try:
        if "metrics.json" not in {a.path for a in client.list_artifacts(run_id)}:
            return {}
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        with tempfile.TemporaryDirectory(prefix="fmrepro-failed-") as tmp:
            local = client.download_artifacts(run_id, "metrics.json", dst_path=tmp)
            with open(local, encoding="utf-8") as f:
                failed = json.load(f).get("failed") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(p): first_line(why) for p, why in failed.items()} if isinstance(failed, dict) else {}


def failures_of(expected: list[tuple[str, str]], evaluations: list[dict],
                nats_datasets: set[str]) -> list[Failure]:
    """Number the failed parts of the used evaluation runs in report row order, then part order.

    Args:
        expected: (dataset, method) rows in report order.
        evaluations: records of ``ExperimentRuns.evaluations`` (``failed_reasons``: part -> line).
        nats_datasets: datasets whose NLL is in nats (their NLL cells are in the 2D table).
    """
    by_pair = {(r["dataset"], r["method"]): r for r in evaluations}
    out: list[Failure] = []
    for dataset, method in expected:
        ev = by_pair.get((dataset, method))
        reasons = (ev or {}).get("failed_reasons") or {}
        for part, reason in reasons.items():
            nats = dataset in nats_datasets and part in NATS_PART_COLUMNS
            columns = NATS_PART_COLUMNS[part] if nats else PART_COLUMNS.get(part, ())
            out.append(Failure(len(out) + 1, dataset, method, part, str(ev["eval_run_id"]),
                               reason or "reason not recorded (see the run's metrics.json)", columns))
    return out
