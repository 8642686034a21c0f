"""Evaluation of trained jobs: NLL, sample quality (FID or labelled stand-ins), NFE, solver
sweeps, during-training curves, trajectories and snapshots (docs/evaluation.md).

Entry point: ``python -m fmcore.evaluate reference|run`` (:mod:`fmcore.evaluate`).
"""

from fmcore.evaluation.quality import METRICS, QualityMetric, build_quality
from fmcore.evaluation.reference import make_reference, reference_dir
from fmcore.evaluation.runner import PARTS, evaluate_job, parse_only

__all__ = [
    "METRICS",
    "PARTS",
    "QualityMetric",
    "build_quality",
    "evaluate_job",
    "make_reference",
    "parse_only",
    "reference_dir",
]
