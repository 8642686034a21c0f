"""Random stand-ins for prepared data: the canary runs before any download (``--synthetic``)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SyntheticDataset"]


class SyntheticDataset:
    """What :class:`fmcore.data.PreparedDataset` offers the training loop, from random numbers.

    Images are uniform in [-1, 1] (the model's range), points standard normal. The cost of a
    step does not depend on the values, only on the shape.

    Args:
        shape: shape of one point, e.g. ``(3, 32, 32)``.
        length: number of points (``len()``; the sampler draws indices below it).
        image: uniform [-1, 1] instead of normal.
    """

    def __init__(self, shape: tuple[int, ...], length: int, image: bool) -> None:
        self.shape, self.length, self.image = tuple(shape), int(length), image
        self.generator: torch.Generator | None = None  # set by the training loop per chunk

    def __len__(self) -> int:
        return self.length

    def get_batch(self, indices: np.ndarray | list[int]) -> torch.Tensor:
        """Random points, float32 ``[len(indices), *shape]``."""
        size = (len(indices), *self.shape)
        if self.image:
            return torch.rand(size, generator=self.generator) * 2.0 - 1.0
        return torch.randn(size, generator=self.generator)
