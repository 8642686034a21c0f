"""Read a prepared dataset (memory-mapped) as float tensors in the model's range.

Images (uint8 x in {0..255}) are dequantized with uniform noise u ~ U[0, 1) and scaled to
[-1, 1]:

.. math::  y = 2 \\, \\frac{x + u}{256} - 1,

so the density of y relates to the discrete data by bits/dim = -log p(y) / (d ln 2) + 7
(docs/paper.md, "Evaluation"). With ``dequantize=False`` the bin centre u = 1/2 is used instead. 2D points
(float32) are returned as stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fmcore.data.errors import DataError
from fmcore.data.manifest import read_manifest, verify
from fmcore.io import read_npy

__all__ = ["PreparedDataset", "load_labels", "load_split", "to_uint8"]

_SPLITS = ("train", "test")


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise DataError(f"split {split!r}: expected one of {list(_SPLITS)}")


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    """Inverse of the image scaling: floor((y + 1) / 2 * 256) clamped to {0..255}, uint8."""
    return torch.floor((y + 1.0) * 128.0).clamp(0, 255).to(torch.uint8)


class PreparedDataset(Dataset):
    """One split of a prepared dataset; ``ds[i]`` is a float32 tensor ([C, H, W] or [2]).

    Attributes:
        array: the memory-mapped numpy array as stored ([N, C, H, W] uint8 or [N, 2] float32).
        manifest: the dataset's ``manifest.json``.
    """

    def __init__(
        self,
        array: np.ndarray,
        manifest: dict,
        dequantize: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.array = array
        self.manifest = manifest
        self.is_image = array.dtype == np.uint8
        self.dequantize = dequantize
        self.generator = generator

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def _convert(self, raw: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(raw))  # a private, writable copy (never the memmap itself)
        if not self.is_image:
            return x.float()
        x = x.float()
        if self.dequantize:
            u = torch.rand(x.shape, generator=self.generator)
        else:
            u = torch.full_like(x, 0.5)
        return (x + u) / 128.0 - 1.0

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._convert(self.array[index])

    def get_batch(self, indices: np.ndarray | torch.Tensor | list[int]) -> torch.Tensor:
        """A batch [B, ...] for explicit indices: one memory-mapped gather, one noise draw."""
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        return self._convert(self.array[np.asarray(indices, dtype=np.int64)])

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """Batched fetch used by ``DataLoader`` (then collated back into [B, ...])."""
        return list(self.get_batch(indices).unbind(0))

    def tensor(self) -> torch.Tensor:
        """The whole split as one float32 tensor (for small sets: 2D points, digits)."""
        return self._convert(self.array[:])


def check_finite(array: np.ndarray, path: str | Path, chunk: int = 1 << 16) -> None:
    """Refuse a floating-point split holding NaN or inf (it would train to NaN and exit 0).

    Raises:
        DataError: naming the file and the first bad row.
    """
    if not np.issubdtype(array.dtype, np.floating):
        return  # uint8 images cannot hold NaN
    for start in range(0, len(array), chunk):
        bad = ~np.isfinite(np.asarray(array[start:start + chunk]))
        if bad.any():
            row = start + int(np.argwhere(bad)[0][0])
            raise DataError(f"{path}: row {row} holds a non-finite value ({bad.sum()} in rows {start}-"
                            f"{start + len(bad) - 1}); expected finite data")


def load_split(
    data_dir: str | Path,
    split: str,
    dequantize: bool = True,
    generator: torch.Generator | None = None,
    check: bool = False,
) -> PreparedDataset:
    """Open ``<data_dir>/<split>.npy`` memory-mapped (``data_dir`` = ``data/prepared/<dataset>``).

    Args:
        data_dir: a prepared dataset directory (has ``manifest.json``).
        split: ``"train"`` or ``"test"``.
        dequantize: images only; uniform dequantization (True) or bin centres (False).
        generator: torch generator for the dequantization noise.
        check: recompute all sha256 against the manifest first (:func:`fmcore.data.verify`) and
            refuse non-finite values (:func:`check_finite`).

    Raises:
        DataError: unknown split, missing or unreadable files, a shape the manifest does not list,
            or (with ``check``) NaN/inf in a float split.
    """
    _check_split(split)
    data_dir = Path(data_dir)
    manifest = verify(data_dir) if check else read_manifest(data_dir)
    path = data_dir / f"{split}.npy"
    try:
        array = read_npy(path, mmap_mode="r")
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected the {split} split of a prepared dataset") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{exc}; expected the {split} split of a prepared dataset") from None
    expected = manifest.get("shapes", {}).get(split)
    if list(array.shape) != expected or str(array.dtype) != manifest.get("dtype"):
        raise DataError(
            f"{path}: shape {list(array.shape)} {array.dtype}, "
            f"manifest says {expected} {manifest.get('dtype')}"
        )
    if check:
        check_finite(array, path)
    return PreparedDataset(array, manifest, dequantize=dequantize, generator=generator)


def load_labels(data_dir: str | Path, split: str) -> np.ndarray:
    """Integer class labels [N] of a split (``<split>_labels.npy``; image datasets only)."""
    _check_split(split)
    path = Path(data_dir) / f"{split}_labels.npy"
    try:
        return read_npy(path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; this dataset has no labels") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{exc}; expected the {split} labels") from None
