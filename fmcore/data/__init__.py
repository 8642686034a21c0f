"""Datasets: prepare raw inputs into one format, verify them, and load them for training.

Prepared format (docs/CONTRACTS.md): ``<data_dir>/<dataset>/{train,test}.npy`` (uint8
[N, C, H, W] images or float32 [N, 2] points), optional ``{train,test}_labels.npy`` (int64 [N])
and ``manifest.json``. Entry point: ``python -m fmcore.data prepare|verify``; see docs/data.md.
"""

from typing import Any

from fmcore.data.build import SOURCES, prepare
from fmcore.data.errors import DataError
from fmcore.data.manifest import dataset_hash, read_manifest, verify
from fmcore.data.toy2d import CHECKERBOARD_LOG_DENSITY, checkerboard_log_prob, eight_gaussians_log_prob

_LOADERS = ("PreparedDataset", "load_labels", "load_split", "to_uint8")


def __getattr__(name: str) -> Any:
    """Import the torch-based loaders on first use, so the prepare CLI starts without torch."""
    if name in _LOADERS:
        from fmcore.data import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'fmcore.data' has no attribute {name!r}")

__all__ = [
    "CHECKERBOARD_LOG_DENSITY",
    "SOURCES",
    "DataError",
    "PreparedDataset",
    "checkerboard_log_prob",
    "dataset_hash",
    "eight_gaussians_log_prob",
    "load_labels",
    "load_split",
    "prepare",
    "read_manifest",
    "to_uint8",
    "verify",
]
