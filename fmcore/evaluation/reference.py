"""Reference data for the quality metrics, computed once per dataset and cached.

``python -m fmcore.evaluate reference --params P --dataset D`` writes
``results/<exp>/<D>/reference/`` (a DVC output, so the statistics are versioned):

* ``fid``: ``<D>_train_clean_custom_na.npz`` (``mu``, ``sigma`` of the Inception pool
  features of the uint8 training split after clean resizing; clean-fid naming); the
  feature batches are cached in ``partial_features/`` until the statistics are written.
* ``fd_digits``: ``digits_cnn.pt`` (the feature CNN, ``weights_only`` loadable),
  ``<D>_train_standin_digits_cnn_custom_na.npz`` (its training-split feature stats).
* ``w2_2d``: ``fresh_samples.npz`` (``x`` [N, 2] fresh from the data's generator with
  ``quality.reference_seed``, independent of the train/test streams).
* always ``reference.json``: what was computed, from which data (sha256 of its manifest),
  and the metric's noise floor: for ``fd_digits`` the distance of the *test* split to the
  training statistics plus the classifier's test accuracy; for ``w2_2d`` the W2 / FD
  between two independent fresh sets of ``quality.n_samples`` points.
A rerun with the same data and settings does nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fmcore.data import dataset_hash, load_labels, load_split
from fmcore.data.toy2d import sample_toy2d
from fmcore.evaluation.context import resolve_device
from fmcore.evaluation.io import BatchCache
from fmcore.io import atomic_savez, atomic_write_json
from fmcore.evaluation.quality import METRICS, classifier_path, fresh_path, reference_stats_path
from fmcore.metrics.fid import (
    FeatureNetwork,
    image_features,
    load_inception,
    resolve_inception_weights,
    save_stats,
)
from fmcore.metrics.frechet import frechet_distance, gaussian_stats
from fmcore.metrics.standin import accuracy, digits_features, save_classifier, train_classifier
from fmcore.metrics.w2 import fd_2d, w2_2d

__all__ = ["make_reference", "reference_dir"]


def reference_dir(job: dict) -> Path:
    """``results/<exp>/<dataset>/reference`` for a resolved job (``fmcore.config.resolve_job``)."""
    run = job.get("run", job["method"])  # "<method>" or "<method>/seed<k>": one folder per part
    return Path(job["paths"]["run_dir"]).parents[run.count("/")] / "reference"


def _fresh_2d(job: dict, q: dict) -> dict:
    shape = job["data"].get("shape", "checkerboard")
    seed = int(q.get("reference_seed", 12345))
    n_ref = int(q.get("n_reference", q["n_samples"]))
    ref = sample_toy2d(shape, n_ref, np.random.default_rng(np.random.SeedSequence(seed)))
    atomic_savez(fresh_path(reference_dir(job)), x=ref)
    a, b = (sample_toy2d(shape, int(q["n_samples"]), np.random.default_rng(s))
            for s in np.random.SeedSequence(seed + 1).spawn(2))  # fmt: skip
    return {"n_reference": n_ref, "w2_2d_floor": w2_2d(a, b), "fd_2d_floor": fd_2d(a, b), "shape": shape}


def _digits(job: dict, q: dict) -> dict:
    data_dir, ref = job["paths"]["data_dir"], reference_dir(job)
    x_train = np.asarray(load_split(data_dir, "train").array)
    x_test = np.asarray(load_split(data_dir, "test").array)
    y_train, y_test = load_labels(data_dir, "train"), load_labels(data_dir, "test")
    steps = int(q.get("classifier_steps", 1000))
    model = train_classifier(x_train, y_train, steps=steps, seed=int(job["evaluate"].get("seed", 0)))
    acc = accuracy(model, x_test, y_test)
    save_classifier(classifier_path(ref), model, acc, steps)
    stats = reference_stats_path(ref, job["dataset"], "fd_digits")
    mu, sigma = save_stats(stats, digits_features(model, x_train))
    mu_t, sigma_t = gaussian_stats(digits_features(model, x_test))
    return {"classifier_test_accuracy": acc, "classifier_steps": steps, "n_train": len(x_train),
            "fd_digits_test_split": frechet_distance(mu_t, sigma_t, mu, sigma)}  # fmt: skip


def _fid(job: dict, q: dict, feature_network: FeatureNetwork | None, fingerprint: dict) -> dict:
    ref = reference_dir(job)
    network, device = feature_network, resolve_device(job["evaluate"].get("device"))
    if network is None:
        weights = resolve_inception_weights(q.get("inception_weights"), job["dataset"])
        network = load_inception(weights, device)
    else:
        device = torch.device("cpu")
    train = load_split(job["paths"]["data_dir"], "train").array  # uint8 [N, C, H, W], memory-mapped
    bs = int(q.get("batch_size", 250))
    n_batches = -(-len(train) // bs)
    cache = BatchCache(ref / "partial_features", fingerprint)

    def batch(i: int) -> dict[str, np.ndarray]:
        imgs = np.asarray(train[i * bs : (i + 1) * bs]).transpose(0, 2, 3, 1)
        return {"features": image_features(np.ascontiguousarray(imgs), network, device)}

    feats = cache.run(n_batches, batch, desc=f"reference features {job['dataset']}")["features"]
    save_stats(reference_stats_path(ref, job["dataset"], "fid"), feats)
    cache.clear()
    return {"n_train": len(train), "resize": "clean", "feature_dim": int(feats.shape[1])}


def make_reference(job: dict, feature_network: FeatureNetwork | None = None, force: bool = False) -> dict:
    """Compute (or reuse) the reference files of ``job``'s dataset; returns ``reference.json``'s content.

    Raises:
        ValueError: unknown metric, missing data/labels/Inception weights (one line each).
    """
    q = job["evaluate"]["quality"]
    metric = q.get("metric")
    if metric not in METRICS:
        raise ValueError(
            f"evaluate.{job['dataset']}.quality.metric: {metric!r}, expected one of {', '.join(METRICS)}"
        )
    ref = reference_dir(job)
    fingerprint = {"metric": metric, "data_hash": dataset_hash(job["paths"]["data_dir"]),
                   "quality": {k: v for k, v in q.items() if k != "inception_weights"},
                   "seed": job["evaluate"].get("seed", 0)}  # fmt: skip
    info_path = ref / "reference.json"
    if info_path.is_file() and not force:
        import json

        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == json.loads(json.dumps(fingerprint)):
            return info
    ref.mkdir(parents=True, exist_ok=True)
    if metric == "w2_2d":
        extra = _fresh_2d(job, q)
    elif metric == "fd_digits":
        extra = _digits(job, q)
    else:
        extra = _fid(job, q, feature_network, fingerprint)
    info = {"dataset": job["dataset"], "metric": metric, "stand_in": METRICS[metric],
            "fingerprint": fingerprint, **extra}  # fmt: skip
    atomic_write_json(info_path, info)
    return info
