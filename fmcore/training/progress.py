"""Training progress: a tqdm bar on a terminal, plain periodic log lines otherwise (SLURM logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """Reports (step, loss, samples/s) on rank 0.

    Args:
        total: last step of the run.
        initial: step the run starts (or resumes) from.
        enabled: False on ranks other than 0.
        stream: where to report (stderr); a TTY gets a bar, anything else log lines.
        every_s: minimum seconds between two plain log lines.
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, stream: TextIO | None = None,
                 every_s: float = 10.0, label: str = "train") -> None:
        self.stream = stream or sys.stderr
        self.enabled, self.total, self.every_s, self.label = enabled, total, every_s, label
        self._last_print = time.monotonic()
        self._step = initial
        tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=initial, file=self.stream, desc=label, dynamic_ncols=True) \
            if tty else None

    def update(self, step: int, loss: float, samples_per_s: float, lr: float) -> None:
        """Advance to ``step`` with the latest loss, throughput and learning rate."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self._step)
            self.bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{samples_per_s:.0f}", lr=f"{lr:.2e}",
                                 refresh=False)
        elif step >= self.total or time.monotonic() - self._last_print >= self.every_s:
            self._last_print = time.monotonic()
            print(f"{self.label} step {step}/{self.total} loss {loss:.5f} lr {lr:.3e} "
                  f"samples/s {samples_per_s:.0f}", file=self.stream, flush=True)
        self._step = step

    def write(self, message: str) -> None:
        """A one-off message that does not break the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """Close the bar (if any)."""
        if self.bar is not None:
            self.bar.close()
