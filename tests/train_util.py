"""Shared helpers of tests/test_train*.py: tiny params and prepared data in a tmp dir."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from fmcore.config import deep_merge, load_params, resolve_job
from fmcore.data import prepare

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "datasets": {"checkerboard": {"n_train": 4096, "n_test": 256}},
    "models": {
        "checkerboard": {"hidden_dim": 64, "num_layers": 3, "time_embed_dim": 16},
        "digits": {"model_channels": 8, "norm_groups": 4, "num_heads": 1},
    },
    "train": {
        "checkerboard": {"steps": 60, "batch_size": 128, "lr": 3.0e-3, "checkpoint_every": 20,
                         "lr_schedule": {"kind": "poly", "warmup_steps": 5, "power": 1.0, "lr_min": 1.0e-8}},
        "digits": {"steps": 30, "batch_size": 32, "lr": 3.0e-3, "checkpoint_every": 10,
                   "lr_schedule": {"kind": "constant", "warmup_steps": 3}},
    },
    # Fig. 5's periodic (weights-only) checkpoints, at the checkpoint periods above
    "evaluate": {"checkerboard": {"during_training": {"every": 20}}, "digits": {"during_training": {"every": 10}}},
}


def tiny_params(folder: Path, override: dict | None = None) -> Path:
    """Write a shrunken copy of params/smoke.yaml to ``folder/params.yaml`` (relative paths)."""
    params = load_params(REPO / "params" / "smoke.yaml")
    params = deep_merge(params, deep_merge(TINY, override))
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def tiny_job(folder: Path, dataset: str, method: str, override: dict | None = None) -> dict:
    """The resolved job of ``tiny_params`` with data prepared and absolute paths under ``folder``."""
    params = load_params(tiny_params(folder, override))
    job = resolve_job(params, dataset, method)
    data_dir = folder / job["paths"]["data_dir"]
    if not (data_dir / "manifest.json").exists():
        prepare(dataset, copy.deepcopy(params["datasets"][dataset]), data_dir)
    job["paths"] = {"data_dir": str(data_dir), "run_dir": str(folder / job["paths"]["run_dir"])}
    return job
