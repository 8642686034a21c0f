"""Peak memory of one job: CUDA max allocated, or the process's RSS high-water mark on a CPU."""

from __future__ import annotations

import resource
from pathlib import Path

import torch

__all__ = ["PeakMemory"]


class PeakMemory:
    """Reset before a job, read after it.

    On CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache).
    On a CPU: ``VmHWM`` of ``/proc/self/status``, reset through ``/proc/self/clear_refs``
    (Linux); where that cannot be reset, the high-water mark since the process started
    (``ru_maxrss``), and :attr:`kind` says so.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "CUDA max allocated" if device.type == "cuda" else "RSS high-water"

    def reset(self) -> None:
        """Start a new measurement."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self.kind = "RSS high-water since process start"

    def peak_bytes(self) -> int:
        """The peak since :meth:`reset`, in bytes."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        self.kind = "RSS high-water since process start"
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
