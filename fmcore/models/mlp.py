"""MLP vector field for 2D data (the checkerboard of Fig. 4).

.. math::

    v_\\theta(t, x) = W_L\\, \\sigma(\\cdots \\sigma(W_1 [x, e(t)] + b_1) \\cdots) + b_L

where e(t) is the sinusoidal embedding of :mod:`fmcore.models.embeddings`, sigma is SiLU,
there are ``num_layers`` hidden layers of width ``hidden_dim`` and the last linear layer
maps back to ``dim``. Parameter count:
(dim + time_embed_dim + 1) h + (num_layers - 1)(h + 1) h + (h + 1) dim.
"""

from __future__ import annotations

import torch
from torch import nn

from fmcore.models.embeddings import SinusoidalTimeEmbedding

__all__ = ["MLP"]


class MLP(nn.Module):
    """Time-conditioned MLP, forward ``model(x [B, dim], t [B]) -> [B, dim]``.

    Args:
        dim: data dimension (2 for the toy data).
        hidden_dim: width h of every hidden layer.
        num_layers: number of hidden layers (Linear + SiLU), >= 1.
        time_embed_dim: width of the sinusoidal time embedding concatenated to x.
    """

    def __init__(
        self, dim: int = 2, hidden_dim: int = 256, num_layers: int = 4, time_embed_dim: int = 64
    ) -> None:
        super().__init__()
        self.dim = dim
        self.time_embed = SinusoidalTimeEmbedding(time_embed_dim)
        layers: list[nn.Module] = []
        width = dim + time_embed_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.SiLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Evaluate v_theta(t, x).

        Args:
            x: points x_t, shape (batch_size, dim).
            t: times in [0, 1], shape (batch_size,) (a scalar is broadcast).

        Returns:
            Velocity of shape (batch_size, dim).
        """
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x: expected shape (batch_size, {self.dim}), got {tuple(x.shape)}")
        t = t.to(x.dtype).reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.to(x.dtype)
        if t.shape != (x.shape[0],):
            raise ValueError(f"t: expected shape ({x.shape[0]},), got {tuple(t.shape)}")
        return self.net(torch.cat([x, self.time_embed(t)], dim=-1))
