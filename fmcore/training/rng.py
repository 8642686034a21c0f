"""Random-number state: derived per-step seeds, and capture/restore of every RNG for resume.

The trainer draws all training noise (x_0, t, dequantization) from generators seeded by
:func:`derive_seed` ``(seed, step, chunk)``, so the noise of a step depends neither on what
ran before nor on how many processes share the batch. The global RNGs (torch, CUDA, numpy,
python: dropout or any library that uses them) and the data sampler are captured in every
checkpoint and restored on resume.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "derive_seed", "restore_rng"]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy ``SeedSequence``: well mixed, order-sensitive)."""
    words = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def capture_rng(sampler_state: dict[str, int] | None = None) -> dict[str, Any]:
    """The state of the torch, CUDA, numpy and python RNGs (+ the sampler) as plain containers.

    The result is loadable with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "sampler": dict(sampler_state or {}),
    }


def restore_rng(state: dict[str, Any]) -> dict[str, int]:
    """Restore what :func:`capture_rng` captured; returns the sampler state.

    Raises:
        ValueError: the state lacks one of the RNGs.
    """
    missing = {"torch", "cuda", "numpy", "python", "sampler"} - set(state)
    if missing:
        raise ValueError(f"checkpoint rng state lacks {sorted(missing)}")
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    return dict(state["sampler"])
