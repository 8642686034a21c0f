"""Count the host-device synchronisations of ``train_loop`` on a GPU with CUDA's sync debug mode.

``torch.cuda.set_sync_debug_mode("warn")`` makes every synchronising CUDA call (``.item()``,
``.tolist()``, a blocking copy to the host, ...) raise a warning. The warnings and the
loop's log records (one per ``log_every`` window, written right after the window's one host
read) go into one ordered list, so the syncs between the first and the last log record are
the steady-state syncs of whole windows (warm-up before, the final checkpoint after).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from gpu_checks.common import RecordingTracker

__all__ = ["SyncRecorder", "count_cuda_syncs", "syncs_per_window"]


class SyncRecorder(RecordingTracker):
    """A recording tracker that also marks each log record in ``events`` (``"log"``)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def log_metrics(self, values: dict[str, float], step: int) -> None:  # noqa: D102
        super().log_metrics(values, step)
        self.events.append("log")


@contextlib.contextmanager
def count_cuda_syncs(events: list[str]) -> Iterator[None]:
    """Append ``"sync"`` to ``events`` for every synchronising CUDA call inside the block."""
    previous = torch.cuda.get_sync_debug_mode()

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:
        if "synchroniz" in str(message):
            events.append("sync")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show  # restored by catch_warnings
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)


def syncs_per_window(events: list[str]) -> tuple[float, int]:
    """(syncs per window between the first and the last log record, windows counted)."""
    logs = [i for i, e in enumerate(events) if e == "log"]
    if len(logs) < 2:
        raise ValueError(f"need at least 2 log records to count whole windows, got {len(logs)}")
    syncs = events[logs[0]:logs[-1]].count("sync")
    return syncs / (len(logs) - 1), len(logs) - 1
