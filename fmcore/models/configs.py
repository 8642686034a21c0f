"""Model configurations: the paper's U-Nets (docs/paper.md, paper Table 3) and the smoke ones.

``PAPER_CONFIGS`` are plain dicts with exactly the ``build_model`` keys, so ``params/paper.yaml``
can copy them verbatim. ``TINY_DIGITS`` equals ``models.digits`` in ``params/smoke.yaml``
(a test checks that they agree).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PAPER_CONFIGS", "TINY_CHECKERBOARD", "TINY_DIGITS"]


def _adm(image_size: int, channels: int, depth: int, mult: list[int], attn: list[int]) -> dict[str, Any]:
    return {
        "arch": "unet",
        "in_channels": 3,
        "image_size": image_size,
        "model_channels": channels,
        "num_res_blocks": depth,
        "channel_mult": mult,
        "num_heads": 4,
        "num_head_channels": 64,
        "attention_resolutions": attn,
        "dropout": 0.0,
        "use_scale_shift_norm": True,
        "resblock_updown": True,
    }


PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    "cifar10": _adm(32, 256, 2, [1, 2, 2, 2], [16]),
    "imagenet32": _adm(32, 256, 3, [1, 2, 2, 2], [16, 8]),
    "imagenet64": _adm(64, 192, 3, [1, 2, 3, 4], [32, 16, 8]),
    "imagenet128": _adm(128, 256, 3, [1, 1, 2, 3, 4], [32, 16, 8]),
}

TINY_DIGITS: dict[str, Any] = {
    "arch": "unet",
    "in_channels": 1,
    "image_size": 8,
    "model_channels": 16,
    "num_res_blocks": 1,
    "channel_mult": [1, 1],
    "num_heads": 2,
    "num_head_channels": -1,
    "attention_resolutions": [],
    "dropout": 0.0,
    "norm_groups": 8,
}

TINY_CHECKERBOARD: dict[str, Any] = {"arch": "mlp", "hidden_dim": 128, "num_layers": 4, "time_embed_dim": 64}
