"""Everything a resume needs, in one object: :class:`TrainState`.

The resume state of a run is its model and EMA weights, the optimizer (Adam moments), the
LR scheduler, the fp16 GradScaler, the data sampler with every RNG (``capture_rng``), the
step and the last :data:`LOSS_TAIL` losses (so ``train.json``'s ``final_loss`` survives a
resume). :meth:`TrainState.state_dict` and :meth:`TrainState.load_state_dict` are the one
place that lists them: the checkpoint payload (docs/CONTRACTS.md, "Checkpoint") is this
dict plus the header the loop adds.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fmcore.training.checkpoint import load_weights
from fmcore.training.ema import EMA
from fmcore.training.rng import capture_rng, restore_rng
from fmcore.training.sampler import BatchSampler

__all__ = ["LOSS_TAIL", "TrainState"]

LOSS_TAIL = 100  # train.json's final loss is the mean of the last LOSS_TAIL steps


def _tail(values: Any = ()) -> collections.deque:
    return collections.deque(values, maxlen=LOSS_TAIL)


@dataclass
class TrainState:
    """The mutable state of one training run (see module docstring)."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler: BatchSampler
    step: int = 0
    loss_tail: collections.deque = field(default_factory=_tail)

    def state_dict(self) -> dict[str, Any]:
        """Plain containers and tensors (``torch.load(weights_only=True)`` reads them back)."""
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": capture_rng(self.sampler.state_dict()), "step": self.step,
                "loss_tail": list(self.loss_tail)}

    def load_state_dict(self, state: Mapping[str, Any], source: str = "last.pt") -> None:
        """Continue from ``state`` (a loaded ``last.pt``, named ``source`` in errors): weights,
        optimizer, RNGs, step. Weights that do not fit the model raise ``CheckpointError``."""
        load_weights(self.model, state["model"], source, "model")
        load_weights(self.ema.model, state["ema"], source, "ema")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(restore_rng(state["rng"]))
        self.step, self.loss_tail = int(state["step"]), _tail(state.get("loss_tail", []))
