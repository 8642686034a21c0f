"""Vector-field networks: an MLP for 2D data and the ADM U-Net (Dhariwal & Nichol, 2021).

Every model maps ``(x [B, ...], t [B]) -> [B, ...]`` with t in [0, 1]; build one from a
params model section with :func:`build_model`. ``python -m fmcore.models`` prints the
parameter counts of the paper's configurations.
"""

from fmcore.models.configs import PAPER_CONFIGS, TINY_CHECKERBOARD, TINY_DIGITS
from fmcore.models.embeddings import SinusoidalTimeEmbedding, sinusoidal_embedding
from fmcore.models.factory import build_model, validate_model_config
from fmcore.models.mlp import MLP

__all__ = [
    "MLP",
    "PAPER_CONFIGS",
    "TINY_CHECKERBOARD",
    "TINY_DIGITS",
    "SinusoidalTimeEmbedding",
    "build_model",
    "count_parameters",
    "sinusoidal_embedding",
    "validate_model_config",
]


def count_parameters(model_cfg: dict) -> int:
    """Number of trainable parameters of ``build_model(model_cfg)``, built on the meta device.

    Args:
        model_cfg: a model section (see :func:`build_model`).

    Returns:
        The parameter count (no memory is allocated for the weights).
    """
    import torch

    with torch.device("meta"):
        model = build_model(model_cfg)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
