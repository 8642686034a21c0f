"""Sinusoidal time embedding shared by the MLP and the U-Net.

The flow-matching time t in [0, 1] (t = 0 noise x_0, t = 1 data x_1) is scaled by
``time_scale`` (1000, the DDPM step range the ADM embedding was designed for) and encoded as
in Vaswani et al. (2017) / guided-diffusion's ``timestep_embedding``:

.. math::

    \\omega_k = \\exp(-\\ln(P) k / h),\\quad k = 0..h-1,\\ h = \\lfloor d/2 \\rfloor

    e(t) = [\\cos(s t \\omega_0), ..., \\cos(s t \\omega_{h-1}),
            \\sin(s t \\omega_0), ..., \\sin(s t \\omega_{h-1})]

with s = ``time_scale``, P = ``max_period`` (10000); an odd d is padded with one zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SinusoidalTimeEmbedding", "sinusoidal_embedding"]


def sinusoidal_embedding(
    t: torch.Tensor, dim: int, time_scale: float = 1000.0, max_period: float = 10000.0
) -> torch.Tensor:
    """Encode times with the sinusoid of the module docstring.

    Args:
        t: times in [0, 1], shape (batch_size,).
        dim: embedding width d (>= 1).
        time_scale: s, multiplies t before the sinusoid.
        max_period: P, the longest period of the frequencies.

    Returns:
        Embedding of shape (batch_size, dim), dtype of ``t`` if floating else float32.
    """
    if dim < 1:
        raise ValueError(f"time embedding dim: expected an integer >= 1, got {dim}")
    if t.dim() != 1:
        raise ValueError(f"t: expected shape (batch_size,), got {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1)
    ).to(t.dtype)
    args = (time_scale * t)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class SinusoidalTimeEmbedding(nn.Module):
    """Module form of :func:`sinusoidal_embedding` (no parameters).

    Args:
        dim: embedding width d.
        time_scale: s, multiplies t in [0, 1] before the sinusoid.
        max_period: P.
    """

    def __init__(self, dim: int, time_scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"time embedding dim: expected an integer >= 1, got {dim}")
        self.dim = dim
        self.time_scale = time_scale
        self.max_period = max_period

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed t of shape (batch_size,) into shape (batch_size, dim)."""
        return sinusoidal_embedding(t, self.dim, self.time_scale, self.max_period)
