"""Building blocks of the ADM U-Net (Dhariwal & Nichol, 2021; guided-diffusion ``unet.py``).

- :class:`GroupNorm32`: GroupNorm computed in float32 (fp16/bf16 safe).
- :class:`ResBlock`: ``h = conv(SiLU(GN(x)))``, optionally up/down-sampled in the middle
  (``resblock_updown``); time conditioning by adaptive group norm (``use_scale_shift_norm``)

  .. math::

      h \\leftarrow GN(h) (1 + s(e)) + b(e),\\quad [s, b] = W\\, \\mathrm{SiLU}(e) + c

  (else ``h <- h + W SiLU(e) + c`` before the norm), then
  ``out = skip(x) + conv_0(Dropout(SiLU(h)))`` with the last conv zero-initialised.
- :class:`AttentionBlock`: multi-head self-attention over the H*W positions,
  ``x + proj_0(Attn(qkv(GN(x))))``, with ``proj_0`` zero-initialised.
- :class:`Downsample` / :class:`Upsample`: stride-2 conv or average pool / nearest x2 (+ conv).
- :class:`TimestepSequential`: a sequence whose ResBlocks receive the time embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttentionBlock",
    "Downsample",
    "GroupNorm32",
    "ResBlock",
    "TimestepSequential",
    "Upsample",
    "zero_module",
]


def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero and return it (ADM's zero-initialised outputs)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in at least float32 (fp16/bf16 inputs are upcast, float64 kept)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise x of shape (B, C, ...); the result has the dtype of x."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        weight = self.weight.to(dtype) if self.weight is not None else None
        bias = self.bias.to(dtype) if self.bias is not None else None
        return F.group_norm(x.to(dtype), self.num_groups, weight, bias, self.eps).to(x.dtype)


class Downsample(nn.Module):
    """Halve H and W: 3x3 conv with stride 2 (``use_conv``) or 2x2 average pooling.

    Args:
        channels: input channels.
        use_conv: learnable stride-2 convolution instead of pooling.
        out_channels: output channels (only with ``use_conv``; defaults to ``channels``).
    """

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if not use_conv and out_channels != channels:
            raise ValueError(
                f"Downsample: pooling keeps {channels} channels, got out_channels={out_channels}"
            )
        self.op: nn.Module = (
            nn.Conv2d(channels, out_channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) to (B, C_out, H/2, W/2)."""
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour interpolation, optionally followed by a 3x3 conv.

    Args:
        channels: input channels.
        use_conv: apply a 3x3 convolution after the interpolation.
        out_channels: output channels (only with ``use_conv``; defaults to ``channels``).
    """

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if not use_conv and out_channels != channels:
            raise ValueError(
                f"Upsample: interpolation keeps {channels} channels, got out_channels={out_channels}"
            )
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) to (B, C_out, 2H, 2W)."""
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class ResBlock(nn.Module):
    """ADM residual block with time conditioning (see the module docstring).

    Args:
        channels: input channels.
        emb_channels: width of the time embedding e.
        dropout: dropout rate before the last convolution.
        out_channels: output channels (defaults to ``channels``).
        use_scale_shift_norm: condition by GN(h)(1 + s) + b instead of adding e.
        up: upsample x2 inside the block (nearest).
        down: downsample x2 inside the block (average pooling).
        norm_groups: groups of the GroupNorm layers.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = True,
        up: bool = False,
        down: bool = False,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(norm_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd: nn.Module = Upsample(channels, False)
            self.x_upd: nn.Module = Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(norm_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block to x (B, C, H, W) with time embedding emb (B, emb_channels)."""
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over spatial positions (guided-diffusion's legacy head order).

    Args:
        channels: input channels C.
        num_heads: number of heads (used when ``num_head_channels`` is -1).
        num_head_channels: channels per head; -1 means C / num_heads.
        norm_groups: groups of the GroupNorm.
    """

    def __init__(
        self, channels: int, num_heads: int = 1, num_head_channels: int = -1, norm_groups: int = 32
    ) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads:
            raise ValueError(f"AttentionBlock: {channels} channels not divisible into {self.num_heads} heads")
        self.norm = GroupNorm32(norm_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply attention to x of shape (B, C, H, W); returns the same shape."""
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        head = c // self.num_heads
        q, k, v = qkv.reshape(b * self.num_heads, 3 * head, -1).split(head, dim=1)
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = self.proj_out(h.transpose(1, 2).reshape(b, c, -1))
        return (x + h).reshape(b, c, *spatial)


class TimestepSequential(nn.Sequential):
    """``nn.Sequential`` that passes the time embedding to the :class:`ResBlock` children."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Apply the children in order; ResBlocks also get ``emb``."""
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x
