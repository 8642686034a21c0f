"""Load a trained job's EMA weights as a probability-flow ODE field v(t, x).

The checkpoint (docs/CONTRACTS.md, "Checkpoint") is read by
:func:`fmcore.training.checkpoint.load_checkpoint`, which refuses a corrupted file or one
written for another method or model configuration. The model (EMA weights unless
``evaluate.<ds>.ema`` is false) is wrapped by :func:`fmcore.paths.velocity_field` with the
prediction type of the training objective, so diffusion baselines are evaluated through
their probability-flow ODE on [0, path.t_max] from N(0, path.prior_std^2 I).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fmcore.models import build_model
from fmcore.objectives import build_objective
from fmcore.paths import GaussianPath, build_path, velocity_field
from fmcore.training.checkpoint import CheckpointError, load_checkpoint, load_weights

__all__ = ["EvalModel", "field_of", "file_sha256", "load_eval_model"]


@dataclass
class EvalModel:
    """A trained field ready for evaluation."""

    v: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    path: GaussianPath
    prediction: str
    step: int
    train_run_id: str | None
    checkpoint: Path
    checkpoint_sha256: str
    device: torch.device = torch.device("cpu")
    network: torch.nn.Module | None = None  # the network inside ``v`` (eval mode, no gradients)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_eval_model(job: dict, checkpoint: str | Path, use_ema: bool = True,
                    device: str | torch.device = "cpu") -> EvalModel:
    """Build the field of ``checkpoint`` for the resolved ``job``.

    Raises:
        fmcore.training.checkpoint.CheckpointError: missing, corrupted or mismatched file
            (a ValueError with a one-line message naming the file).
    """
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint, expect={"method": job["method"], "model_config": job["model"]})
    key = "ema" if use_ema else "model"
    if key not in ckpt:  # a weights-only periodic checkpoint holds one of the two
        raise CheckpointError(f"{checkpoint}: holds no {key!r} weights (evaluate.<dataset>.ema is "
                              f"{use_ema}; the checkpoint was written for the other setting)")
    model = build_model(ckpt["model_config"])
    load_weights(model, ckpt[key], checkpoint, key)
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    v, path, prediction = field_of(model, ckpt["path_config"])
    return EvalModel(
        v=v, path=path, prediction=prediction, step=int(ckpt["step"]),
        train_run_id=ckpt.get("mlflow_run_id"), checkpoint=checkpoint,
        checkpoint_sha256=file_sha256(checkpoint), device=torch.device(device), network=model,
    )  # fmt: skip


def field_of(model: torch.nn.Module, path_cfg: dict) -> tuple[Callable, GaussianPath, str]:
    """``(v, path, prediction)``: the probability-flow field v(t, x) of a network trained on the
    path ``path_cfg`` (a job's ``path`` section), read through its objective's prediction type."""
    path = build_path(path_cfg)
    prediction = build_objective(path_cfg, path).prediction
    return velocity_field(model, path, prediction), path, prediction
