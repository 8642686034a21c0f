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
        # Walking a deep module tree costs milliseconds: collect the tensors once.
        self._ema_params = list(self.model.parameters())
        self._ema_buffers = list(self.model.buffers())
        self._source: tuple[int, list[torch.Tensor], list[torch.Tensor]] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights."""
        if self._source is None or self._source[0] != id(model):
            self._source = (id(model), [p.detach() for p in model.parameters()], list(model.buffers()))
        _, params, buffers = self._source
        if params:  # one fused multi-tensor lerp: theta_ema += (1 - beta) (theta - theta_ema)
            torch._foreach_lerp_(self._ema_params, params, 1.0 - self.decay)
        for b_ema, b in zip(self._ema_buffers, buffers):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights as a model state_dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore EMA weights saved by :meth:`state_dict`."""
        self.model.load_state_dict(state)
