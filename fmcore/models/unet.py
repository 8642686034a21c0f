"""The ADM U-Net of Dhariwal & Nichol (2021), as used by Lipman et al. (2023), paper Table 3.

A re-implementation of guided-diffusion's ``UNetModel`` (unconditional, fp32 weights) as a
flow-matching vector field v_theta(t, x):

.. math::

    e = W_2\\, \\mathrm{SiLU}(W_1\\, \\mathrm{emb}(1000\\, t)),\\qquad
    v_\\theta(t, x) = \\mathrm{Out}(\\mathrm{Dec}(\\mathrm{Mid}(\\mathrm{Enc}(x, e), e), e))

Encoder: a 3x3 conv to ``model_channels``, then per level (``channel_mult``) ``num_res_blocks``
ResBlocks (+ attention where the resolution is in ``attention_resolutions``) and, except at
the last level, a down-sampling ResBlock (``resblock_updown``) or conv. Middle: ResBlock,
attention, ResBlock. Decoder: per level ``num_res_blocks + 1`` ResBlocks on the concatenation
with the matching encoder activation (+ attention), then an up-sampling block. Output:
GroupNorm, SiLU, zero-initialised 3x3 conv, so v_theta = 0 at initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fmcore.models.blocks import (
    AttentionBlock,
    Downsample,
    GroupNorm32,
    ResBlock,
    TimestepSequential,
    Upsample,
    zero_module,
)
from fmcore.models.embeddings import sinusoidal_embedding

__all__ = ["UNet"]


class UNet(nn.Module):
    """ADM U-Net vector field, forward ``model(x [B, C, H, W], t [B]) -> [B, C_out, H, W]``.

    Args:
        in_channels: image channels C.
        image_size: H = W in pixels.
        model_channels: base width; level i has ``model_channels * channel_mult[i]`` channels.
        num_res_blocks: ResBlocks per encoder level (the decoder has one more).
        channel_mult: width multiplier per resolution level.
        num_heads: attention heads (used when ``num_head_channels`` is -1).
        num_head_channels: channels per attention head, or -1 to use ``num_heads``.
        attention_resolutions: resolutions in pixels (e.g. [16, 8]) that get attention.
        dropout: dropout rate inside the ResBlocks.
        out_channels: output channels (defaults to ``in_channels``).
        use_scale_shift_norm: adaptive GroupNorm time conditioning (ADM: true).
        resblock_updown: up/down-sample with ResBlocks (ADM: true) instead of convs.
        norm_groups: GroupNorm groups (ADM: 32).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        model_channels: int,
        num_res_blocks: int,
        channel_mult: Sequence[int],
        num_heads: int,
        num_head_channels: int,
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.model_channels = model_channels
        # attention resolutions in pixels -> downsample rates ds = image_size / resolution
        attn_ds = {image_size // r for r in attention_resolutions}
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        def res(ch_in: int, ch_out: int, up: bool = False, down: bool = False) -> ResBlock:
            return ResBlock(ch_in, emb_dim, dropout, ch_out, use_scale_shift_norm, up, down, norm_groups)

        def attn(ch_: int) -> AttentionBlock:
            return AttentionBlock(ch_, num_heads, num_head_channels, norm_groups)

        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, model_channels * mult)]
                ch = model_channels * mult
                if ds in attn_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, True)
                self.input_blocks.append(TimestepSequential(down))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in attn_ds:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(
            GroupNorm32(norm_groups, ch),
            nn.SiLU(),
            zero_module(nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Evaluate v_theta(t, x).

        Args:
            x: images x_t, shape (batch_size, in_channels, image_size, image_size).
            t: times in [0, 1], shape (batch_size,) (a single value is broadcast).

        Returns:
            Velocity of shape (batch_size, out_channels, image_size, image_size).
        """
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"x: expected shape (batch_size, {shape}), got {tuple(x.shape)}")
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        if t.shape != (x.shape[0],):
            raise ValueError(f"t: expected shape ({x.shape[0]},), got {tuple(t.shape)}")
        emb = self.time_embed(sinusoidal_embedding(t.to(x.dtype), self.model_channels))
        h, skips = x, []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
