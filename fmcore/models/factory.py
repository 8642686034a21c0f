"""``build_model(model_cfg)``: validate a ``params`` model section and build the network.

Keys (docs/CONTRACTS.md, docs/models.md):

- ``arch: mlp``: ``hidden_dim``, ``num_layers``, ``time_embed_dim``, optional ``dim`` (2).
- ``arch: unet``: ``in_channels``, ``image_size``, ``model_channels``, ``num_res_blocks``,
  ``channel_mult`` (list), ``num_heads``, ``num_head_channels`` (-1 = use ``num_heads``),
  ``attention_resolutions`` (list of resolutions in pixels), ``dropout``; optional
  ``out_channels`` (= ``in_channels``), ``use_scale_shift_norm`` (true),
  ``resblock_updown`` (true), ``norm_groups`` (32, the ADM GroupNorm32).

Unknown keys or bad values raise ``ValueError`` naming the key and what was expected.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["build_model", "validate_model_config"]

_MLP_REQUIRED = ("hidden_dim", "num_layers", "time_embed_dim")
_MLP_DEFAULTS: dict[str, Any] = {"dim": 2}
_UNET_REQUIRED = (
    "in_channels",
    "image_size",
    "model_channels",
    "num_res_blocks",
    "channel_mult",
    "num_heads",
    "num_head_channels",
    "attention_resolutions",
    "dropout",
)
_UNET_DEFAULTS: dict[str, Any] = {
    "out_channels": None,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "norm_groups": 32,
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos_int(cfg: dict, key: str) -> int:
    v = cfg[key]
    if not _is_int(v) or v < 1:
        raise ValueError(f"model config key '{key}': expected an integer >= 1, got {v!r}")
    return v


def _int_list(cfg: dict, key: str, allow_empty: bool) -> list[int]:
    v = cfg[key]
    if not isinstance(v, (list, tuple)) or (not v and not allow_empty) or not all(
        _is_int(x) and x >= 1 for x in v
    ):
        need = "a" if allow_empty else "a non-empty"
        raise ValueError(f"model config key '{key}': expected {need} list of integers >= 1, got {v!r}")
    return [int(x) for x in v]


def _check_keys(cfg: dict, required: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    allowed = {"arch", *required, *defaults}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(
            f"model config (arch {cfg['arch']!r}): unknown key(s) {unknown}; expected only {sorted(allowed)}"
        )
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ValueError(f"model config (arch {cfg['arch']!r}): missing required key(s) {missing}")
    return {**defaults, **cfg}


def _validate_mlp(cfg: dict) -> dict[str, Any]:
    cfg = _check_keys(cfg, _MLP_REQUIRED, _MLP_DEFAULTS)
    for key in ("dim", *_MLP_REQUIRED):
        _pos_int(cfg, key)
    return cfg


def _validate_unet(cfg: dict) -> dict[str, Any]:
    cfg = _check_keys(cfg, _UNET_REQUIRED, _UNET_DEFAULTS)
    for key in ("in_channels", "image_size", "model_channels", "num_res_blocks", "num_heads", "norm_groups"):
        _pos_int(cfg, key)
    if cfg["out_channels"] is None:
        cfg["out_channels"] = cfg["in_channels"]
    _pos_int(cfg, "out_channels")
    mult = _int_list(cfg, "channel_mult", allow_empty=False)
    attn = _int_list(cfg, "attention_resolutions", allow_empty=True)
    nhc = cfg["num_head_channels"]
    if not _is_int(nhc) or (nhc < 1 and nhc != -1):
        raise ValueError(f"model config key 'num_head_channels': expected -1 or an integer >= 1, got {nhc!r}")
    dropout = cfg["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"model config key 'dropout': expected a number in [0, 1), got {dropout!r}")
    for key in ("use_scale_shift_norm", "resblock_updown"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"model config key '{key}': expected true or false, got {cfg[key]!r}")
    size = cfg["image_size"]
    if size % 2 ** (len(mult) - 1):
        raise ValueError(
            f"model config key 'image_size': {size} is not divisible by 2**(len(channel_mult) - 1) = "
            f"{2 ** (len(mult) - 1)}"
        )
    levels = [size // 2**i for i in range(len(mult))]
    bad = [r for r in attn if r not in levels]
    if bad:
        raise ValueError(
            f"model config key 'attention_resolutions': {bad} not among the U-Net resolutions {levels}"
        )
    groups, width = cfg["norm_groups"], cfg["model_channels"]
    for ch in sorted({width * m for m in mult}):
        if ch % groups:
            raise ValueError(
                f"model config key 'model_channels'/'channel_mult': {ch} channels not divisible by "
                f"norm_groups={groups} (GroupNorm)"
            )
    # attention runs at the listed resolutions and always in the middle block (last level)
    attn_channels = {width * m for m, r in zip(mult, levels) if r in attn} | {width * mult[-1]}
    for ch in sorted(attn_channels):
        if nhc != -1 and ch % nhc:
            raise ValueError(
                f"model config key 'num_head_channels': {ch} attention channels not divisible by {nhc}"
            )
        if nhc == -1 and ch % cfg["num_heads"]:
            raise ValueError(
                f"model config key 'num_heads': {ch} attention channels not divisible by {cfg['num_heads']}"
            )
    cfg["channel_mult"], cfg["attention_resolutions"], cfg["dropout"] = mult, attn, float(dropout)
    return cfg


def validate_model_config(model_cfg: dict) -> dict[str, Any]:
    """Check a model section and return a copy with the defaults filled in.

    Args:
        model_cfg: the ``params["models"][dataset]`` mapping.

    Returns:
        The completed configuration (a new dict; the input is not modified).
    """
    if not isinstance(model_cfg, dict):
        raise ValueError(f"model config: expected a mapping, got {type(model_cfg).__name__}")
    arch = model_cfg.get("arch")
    if arch == "mlp":
        return _validate_mlp(dict(model_cfg))
    if arch == "unet":
        return _validate_unet(dict(model_cfg))
    raise ValueError(f"model config key 'arch': expected 'mlp' or 'unet', got {arch!r}")


def build_model(model_cfg: dict) -> nn.Module:
    """Build the vector-field network v_theta(t, x) described by ``model_cfg``.

    Args:
        model_cfg: the ``params["models"][dataset]`` mapping (see the module docstring).

    Returns:
        An ``nn.Module`` with forward ``model(x [B, ...], t [B]) -> [B, ...]``, t in [0, 1].
    """
    cfg = validate_model_config(model_cfg)
    arch = cfg.pop("arch")
    if arch == "mlp":
        from fmcore.models.mlp import MLP

        return MLP(**cfg)
    from fmcore.models.unet import UNet

    return UNet(**cfg)
