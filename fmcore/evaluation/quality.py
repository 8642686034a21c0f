"""Sample-quality metrics behind one interface: real FID, or a labelled CPU stand-in.

========== ============== ======================================= =====================
name       stand-in       features of a sample batch              reference
========== ============== ======================================= =====================
``fid``    no             Inception-v3 pool (clean-fid, 2048-d)   training split stats
``fd_digits`` yes         penultimate layer of a digits CNN (64-d) training split stats
``w2_2d``  yes            the 2D points themselves                fresh data samples
========== ============== ======================================= =====================

``QualityMetric.features(x_1)`` maps samples in model scale to feature rows;
``QualityMetric.score(features)`` returns ``{name: value, ...extras}`` (``w2_2d`` adds
``fd_2d``). Only the Inception path may ever be named ``fid``. Reference files are made by
``python -m fmcore.evaluate reference`` (:mod:`fmcore.evaluation.reference`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmcore.metrics.fid import (
    FeatureNetwork,
    fid_from_features,
    image_features,
    load_inception,
    load_stats,
    model_to_uint8,
    resolve_inception_weights,
    stats_filename,
)
from fmcore.metrics.frechet import frechet_distance, gaussian_stats
from fmcore.metrics.standin import digits_features, load_classifier
from fmcore.metrics.w2 import fd_2d, w2_2d

__all__ = [
    "METRICS",
    "QualityMetric",
    "build_quality",
    "classifier_path",
    "fresh_path",
    "reference_stats_path",
]

METRICS = {"fid": False, "fd_digits": True, "w2_2d": True}  # name -> is a stand-in


def reference_stats_path(ref_dir: str | Path, dataset: str, metric: str) -> Path:
    """Reference statistics file in clean-fid's custom naming (lower case)."""
    if metric == "fid":
        return Path(ref_dir) / stats_filename(f"{dataset}_train", mode="clean")
    return Path(ref_dir) / stats_filename(f"{dataset}_train", mode="standin", model_name="digits_cnn")


def classifier_path(ref_dir: str | Path) -> Path:
    """Checkpoint of the digits feature CNN."""
    return Path(ref_dir) / "digits_cnn.pt"


def fresh_path(ref_dir: str | Path) -> Path:
    """Fresh 2D data samples (``x`` [N, 2]) for ``w2_2d``."""
    return Path(ref_dir) / "fresh_samples.npz"


@dataclass
class QualityMetric:
    """A named sample-quality metric (see module docstring)."""

    name: str
    features: Callable[[torch.Tensor], np.ndarray]
    score: Callable[[np.ndarray], dict[str, float]]
    info: dict = field(default_factory=dict)

    @property
    def stand_in(self) -> bool:
        """True for every metric but Inception FID."""
        return METRICS[self.name]


def _check_metric(name: str, dataset: str) -> None:
    if name not in METRICS:
        raise ValueError(
            f"evaluate.{dataset}.quality.metric: {name!r}, expected one of {', '.join(METRICS)}"
        )


def build_quality(
    cfg: dict, dataset: str, ref_dir: str | Path, feature_network: FeatureNetwork | None = None,
    device: str | torch.device = "cpu",
) -> QualityMetric:
    """Build the metric named by ``evaluate.<dataset>.quality.metric`` from its reference files.

    Args:
        cfg: the ``evaluate.<dataset>.quality`` section.
        dataset: dataset name.
        ref_dir: ``results/<exp>/<dataset>/reference``.
        feature_network: replaces Inception for ``fid`` (tests inject a tiny network).
        device: where Inception runs.

    Raises:
        ValueError: unknown metric, missing reference files, or missing Inception weights.
    """
    name = cfg.get("metric")
    _check_metric(name, dataset)
    ref_dir = Path(ref_dir)
    if name == "w2_2d":
        from fmcore.evaluation.io import load_npz

        if not fresh_path(ref_dir).is_file():
            raise ValueError(
                f"{fresh_path(ref_dir)}: missing; run `python -m fmcore.evaluate reference` first"
            )
        ref = load_npz(fresh_path(ref_dir))["x"].astype(np.float64)

        def score_2d(f: np.ndarray) -> dict[str, float]:
            return {"w2_2d": w2_2d(f, ref), "fd_2d": fd_2d(f, ref)}

        return QualityMetric(name, lambda x: x.detach().double().cpu().numpy().reshape(len(x), -1), score_2d)
    stats = reference_stats_path(ref_dir, dataset, name)
    if name == "fd_digits":
        model, acc = load_classifier(classifier_path(ref_dir))
        mu_ref, sigma_ref = load_stats(stats)

        def score_digits(f: np.ndarray) -> dict[str, float]:
            mu, sigma = gaussian_stats(f)
            return {"fd_digits": frechet_distance(mu, sigma, mu_ref, sigma_ref)}

        return QualityMetric(
            name, lambda x: digits_features(model, model_to_uint8(x)), score_digits,
            info={"classifier_test_accuracy": acc},
        )  # fmt: skip
    load_stats(stats)  # fail before sampling if the reference statistics are missing
    network = feature_network
    if network is None:
        network = load_inception(resolve_inception_weights(cfg.get("inception_weights"), dataset), device)
    return QualityMetric(
        name, lambda x: image_features(model_to_uint8(x), network, device),
        lambda f: {"fid": fid_from_features(f, stats)}, info={"resize": "clean", "stats": stats.name},
    )  # fmt: skip
