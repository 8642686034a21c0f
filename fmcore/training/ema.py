"""Exponential moving average of the model weights, used for evaluation.

After every optimizer update, for each parameter theta with EMA copy theta_ema:

.. math::

    \\theta_{ema} \\leftarrow \\beta\\, \\theta_{ema} + (1 - \\beta)\\, \\theta

with decay beta (params ``train.ema_decay``); buffers are copied as they are.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """EMA of ``model``'s parameters; ``ema.model`` is a frozen copy to evaluate with.

    Args:
        model: the trained module (unwrapped, not the DDP wrapper).
        decay: beta in [0, 1]; 0 copies the weights, 1 freezes them.

    Raises:
        ValueError: decay outside [0, 1].
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"train.ema_decay={decay!r}: expected a number in [0, 1]")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights."""
        dst = list(self.model.parameters())
        if dst:  # one fused multi-tensor lerp: theta_ema += (1 - beta) (theta - theta_ema)
            torch._foreach_lerp_(dst, [p.detach() for p in model.parameters()], 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights as a model state_dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore EMA weights saved by :meth:`state_dict`."""
        self.model.load_state_dict(state)
