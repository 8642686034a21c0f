"""Checkpoints: atomic writes and validated, pickle-safe loading (docs/CONTRACTS.md, "Checkpoint").

A checkpoint is ``torch.save`` of plain containers and tensors, of one of two kinds::

    state   (last.pt, checkpoint.pt: everything a resume needs)
      {"format": "fmrepro-ckpt-v1", "kind": "state", "experiment", "dataset", "method",
       "model_config", "path_config", "train_config", "step", "mlflow_run_id",
       "model", "ema", "optimizer", "scheduler", "scaler", "rng", "loss_tail"}
    weights (checkpoints/step_<N>.pt, Fig. 5: a quarter of a state's bytes)
      {"format", "kind": "weights", the same header, and "ema" (or "model" when the
       evaluation reads the raw weights)}

(Files written before ``kind`` existed are states.)

It is written to a temporary file in the destination directory, fsynced and renamed over the
destination, so a crash or a full disk never leaves a half-written file under the real name
and never destroys the previous good checkpoint. It is read with ``weights_only=True``: a
file holding arbitrary Python objects is refused, as is one written for another method,
dataset, model or path configuration than the caller expects.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fmcore.io import atomic_write, fsync_dir

__all__ = ["FORMAT", "CheckpointError", "link_or_copy", "load_checkpoint", "load_weights", "remove_stale_temp",
           "save_checkpoint"]

FORMAT = "fmrepro-ckpt-v1"
HEADER = ("format", "experiment", "dataset", "method", "model_config", "path_config", "train_config", "step")
REQUIRED = {"state": (*HEADER, "model", "ema"), "weights": HEADER}


class CheckpointError(ValueError):
    """A checkpoint is unreadable, unsafe, or does not match what the caller expects."""


def save_checkpoint(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Atomically write ``payload`` to ``path`` (temp file in the same dir, fsync, ``os.replace``)."""
    return atomic_write(path, lambda f: torch.save(dict(payload), f))


def remove_stale_temp(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files a killed writer left in ``folder`` (not recursive).

    Only call this when no other process writes into ``folder`` (one job per run dir).
    """
    folder = Path(folder)
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def link_or_copy(src: str | Path, dst: str | Path) -> Path:
    """Atomically make ``dst`` a hard link to (or, across file systems, a copy of) ``src``."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        return save_checkpoint(torch.load(src, map_location="cpu", weights_only=True), dst)
    os.replace(tmp, dst)
    fsync_dir(dst.parent)
    return dst


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def load_checkpoint(path: str | Path, expect: Mapping[str, Any] | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely and check it against ``expect``.

    Args:
        path: checkpoint file.
        expect: header fields the checkpoint must carry, e.g. ``{"method": "fm_ot",
            "model_config": cfg["model"]}``; dicts are compared by value (lists == tuples).
        map_location: where tensors are loaded.

    Raises:
        CheckpointError: missing, truncated/corrupted, holding non-tensor objects, not in
            the fmrepro format, or differing from ``expect`` (the message names the field,
            both values and the file).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        why = lines[0] if lines else type(exc).__name__
        if "GLOBAL" in why:
            raise CheckpointError(f"{path}: refused, not a plain-tensor checkpoint (weights_only): {why}") from None
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint (weights_only loader: {why})") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file") from None
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler fails on damaged bytes
        # with whatever its opcode handler raises (EOFError, IndexError, KeyError, zip errors...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not an fmrepro checkpoint (format={found!r}, expected {FORMAT!r})")
    kind = ckpt.get("kind", "state")
    if kind not in REQUIRED:
        raise CheckpointError(f"{path}: checkpoint kind {kind!r}, expected one of {sorted(REQUIRED)}")
    missing = [k for k in REQUIRED[kind] if k not in ckpt]
    if kind == "weights" and "ema" not in ckpt and "model" not in ckpt:
        missing.append("ema or model")
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    for key, want in (expect or {}).items():
        have = ckpt.get(key)
        if _canonical(have) != _canonical(want):
            raise CheckpointError(f"{path}: checkpoint {key} is {_canonical(have)}, expected "
                                  f"{_canonical(want)} (written by another job or configuration)")
    return ckpt


def load_weights(module: torch.nn.Module, state: Mapping[str, Any], path: str | Path, key: str = "model") -> None:
    """``module.load_state_dict(state)``, with one line naming the file when the weights do not fit.

    A checkpoint whose header matches but whose tensors belong to another network (edited by
    hand, or written by an older fmcore) makes ``load_state_dict`` raise a RuntimeError of
    dozens of lines; this says how many tensors are missing, unexpected or of another shape.

    Raises:
        CheckpointError: the state does not fit ``module``.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: {key!r} is a {type(state).__name__}, expected a mapping of tensors")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
    if missing or unexpected or shapes:
        first = (f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}" if unexpected
                 else f"{shapes[0]!r} is {tuple(getattr(state[shapes[0]], 'shape', ()))}, the model's is "
                      f"{tuple(own[shapes[0]].shape)}")
        raise CheckpointError(f"{path}: {key!r} weights do not fit the model of its model_config "
                              f"({len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} of another "
                              f"shape; first: {first})")
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: {key!r} weights do not load ({first})") from None
