"""``python -m fmcore.train`` with ``torch.use_deterministic_algorithms(True, warn_only=True)``.

Used by the resume check of ``benchmarks/gpu_check.py``: the CLI itself, unchanged, with
deterministic kernels requested where torch has them (a kernel without one warns on stderr,
which the check reads). It also prints, once, the process group the CLI joined (backend and
world size), so the check can see that NCCL (or gloo) really ran.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism, before CUDA starts

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import fmcore.training.distributed as fdist  # noqa: E402
from fmcore.train import main  # noqa: E402

_init = fdist.init_distributed


def _init_and_report(env: fdist.DistEnv, device: torch.device) -> None:
    _init(env, device)
    if dist.is_initialized():
        print(f"gpu_check: process group backend={dist.get_backend()} world_size={dist.get_world_size()} "
              f"device={device}", file=sys.stderr)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True, warn_only=True)
    fdist.init_distributed = _init_and_report  # fmcore.train imports it at call time
    sys.exit(main())
