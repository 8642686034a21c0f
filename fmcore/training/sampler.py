"""Seeded order of the training data: a fresh permutation each epoch, resumable mid-epoch.

Epoch e visits the training set in the order ``randperm(N)`` drawn from a generator seeded
with ``derive_seed(seed, EPOCH_KEY, e)``; batches are consecutive slices of it (the last,
incomplete slice of an epoch is dropped). The state is just ``(epoch, position)``.
"""

from __future__ import annotations

import torch

from fmcore.training.rng import derive_seed

__all__ = ["BatchSampler"]

EPOCH_KEY = 0x5EED


class BatchSampler:
    """Global batches of indices into a dataset of ``n`` items.

    Args:
        n: dataset size.
        batch_size: the effective (global) batch size.
        seed: params ``train.seed``.

    Raises:
        ValueError: the batch is larger than the dataset.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if not 0 < batch_size <= n:
            raise ValueError(f"train.batch_size={batch_size}: expected 1..{n} (the training set size)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.position = 0, 0
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(derive_seed(self.seed, EPOCH_KEY, self.epoch))
            self._perm = torch.randperm(self.n, generator=g)
        return self._perm

    def next_indices(self) -> torch.Tensor:
        """The next global batch of indices [batch_size] (int64)."""
        if self.position + self.batch_size > self.n:
            self.epoch, self.position, self._perm = self.epoch + 1, 0, None
        idx = self._permutation()[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position"}``."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved ``(epoch, position)``."""
        self.epoch, self.position, self._perm = int(state["epoch"]), int(state["position"]), None
