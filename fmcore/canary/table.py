"""The canary's per-job table (text) and its JSON form."""

from __future__ import annotations

import dataclasses
import json

from fmcore.canary.probe import JobCheck

__all__ = ["format_table", "to_json"]

_HEADER = ("job", "status", "train micro-batch", "step s", "ckpt save/load s",
           "evaluation batches (batch: s)",
           "peak memory", "notes")


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(c: JobCheck) -> list[str]:
    parts = {p.name: p for p in c.parts}
    train = parts.get("train")
    batch = "-"
    if train is not None:
        batch = f"{train.batch}" + (f" of {train.wanted}" if train.batch != train.wanted else "")
        batch += f" x{c.accumulation}/rank, {c.world_size} rank(s)"
    evals = []
    for p in c.parts[1:]:
        shown = p.status if p.status in ("skip", "n/a") else f"{p.batch}: {_seconds(p.seconds)}"
        shown = "= nll" if p.note == "= nll" else shown
        evals.append(f"{p.name} {shown}" + (" (OOM at " + str(p.wanted) + ")" if p.status == "oom" else ""))
    ckpt = f"{_seconds(c.save_seconds)}/{_seconds(c.load_seconds)}"
    if c.shared_with:
        ckpt = f"= {c.shared_with}"
    elif c.checkpoint_bytes:
        ckpt += f" ({_gb(c.checkpoint_bytes)})"
    notes = []
    if c.capped_at:
        notes.append(f"batch capped at {c.capped_at} ({c.device.split(':')[0].upper()})")
    notes += [p.note for p in c.parts if p.status == "skip" and p.note]
    notes += c.advice
    if c.error:
        notes.append(c.error)
    mem = _gb(c.peak_bytes) + (" RSS" if c.memory_kind.startswith("RSS") else "")
    return [c.key, "OK" if c.ok else "FAIL", batch, _seconds(train.seconds if train else None), ckpt,
            ", ".join(evals) or "-", mem, "; ".join(notes)]


def format_table(checks: list[JobCheck], header_note: str = "") -> str:
    """Aligned text table, one row per job, then a legend line."""
    rows = [list(_HEADER)] + [_row(c) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
             for r in rows]
    kinds = sorted({c.memory_kind for c in checks if c.memory_kind})
    legend = ("step s: one optimizer step of one micro-batch (first step: includes warm-up); evaluation "
              "batches: one NFE of each part (nll/dt_nll with the divergence, sample without gradients), "
              f"features: the quality metric's network; peak memory: {', '.join(kinds) or 'n/a'}"
              + ("; ckpt '= job': the network's checkpoint round trip was that job's (the methods of a "
                 "network share it)" if any(c.shared_with for c in checks) else ""))
    failed = sum(not c.ok for c in checks)
    summary = f"{len(checks) - failed} of {len(checks)} job(s) OK" + (f", {failed} FAILED" if failed else "")
    return "\n".join([*lines, "", legend, *([header_note] if header_note else []), summary]) + "\n"


def to_json(checks: list[JobCheck], **extra: object) -> str:
    """``{"jobs": [<JobCheck as a dict>...], **extra}`` as indented JSON."""
    return json.dumps({**extra, "jobs": [dataclasses.asdict(c) for c in checks]}, indent=2) + "\n"
