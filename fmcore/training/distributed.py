"""Process-group set-up for DDP, launched by ``torchrun`` or by SLURM ``srun``.

The rank layout comes from the launcher's environment:

- torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
- SLURM: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``), ``SLURM_LOCALID``;
  the master is the first host of ``SLURM_STEP_NODELIST``/``SLURM_NODELIST`` as expanded by
  ``scontrol show hostnames``, reached at its ``NodeAddr`` (``scontrol show node``; the list's
  first entry without scontrol), the port
  ``MASTER_PORT`` or ``20000 + SLURM_JOB_ID % 20000``.

Backend: nccl on GPU, gloo on CPU. One process per GPU; the device is
``cuda:(LOCAL_RANK % visible GPUs)`` (:func:`local_device`): ``cuda:LOCAL_RANK`` on a node
that shows each task all its GPUs, ``cuda:0`` on sites that bind one GPU per task.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "barrier", "cleanup", "first_host", "init_distributed", "local_device", "read_dist_env"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "none"  # none | torchrun | slurm

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that logs and writes files)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when this process joins a process group and trains under DDP: more than one rank,
        or launched by torchrun (a 1-rank group runs the very code of a multi-GPU job, NCCL
        included: how ``benchmarks/gpu_check.py`` exercises it on one GPU)."""
        return self.world_size > 1 or self.launcher == "torchrun"


def _scontrol_hostnames(nodelist: str) -> list[str]:
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout.split()


def _scontrol_node_addrs(nodelist: str) -> list[str]:
    """The nodes of a list, the first one by its address (``NodeAddr``: SLURM's own way to reach
    it, the host name on most clusters; sites whose node names are not host names set it)."""
    names = _scontrol_hostnames(nodelist)
    if names:
        out = subprocess.run(["scontrol", "show", "node", "-o", names[0]], capture_output=True, text=True,
                             timeout=30, check=False)
        m = re.search(r"\bNodeAddr=(\S+)", out.stdout)
        if m and m.group(1) not in ("", "(null)"):
            names[0] = m.group(1)
    return names


def first_host(nodelist: str, expand: Callable[[str], list[str]] | None = _scontrol_node_addrs) -> str:
    """The first host of a SLURM node list (``node[01-04],gpu7`` -> ``node01``, or its NodeAddr)."""
    if expand is not None:
        try:
            hosts = expand(nodelist)
            if hosts:
                return hosts[0]
        except (OSError, subprocess.SubprocessError):
            pass
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"SLURM_NODELIST={nodelist!r}: cannot read a host name from it")
    prefix, ranges = m.group(1), m.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"environment {key}={env[key]!r}: expected an integer") from None


def read_dist_env(env: Mapping[str, str] | None = None,
                  expand: Callable[[str], list[str]] | None = _scontrol_node_addrs) -> DistEnv:
    """The rank layout from torchrun or SLURM variables; single process if neither is set.

    Raises:
        ValueError: inconsistent values (rank outside the world, non-integer variables).
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        d = DistEnv(rank=_int(env, "RANK"), world_size=_int(env, "WORLD_SIZE"),
                    local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                    master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                    master_port=_int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500,
                    launcher="torchrun")
    elif "SLURM_PROCID" in env and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_NTASKS" in env):
        ntasks_key = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
        world = _int(env, ntasks_key)
        if world == 1:
            return DistEnv()
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
        port = (_int(env, "MASTER_PORT") if "MASTER_PORT" in env
                else 20000 + (_int(env, "SLURM_JOB_ID") if "SLURM_JOB_ID" in env else 0) % 20000)
        d = DistEnv(rank=_int(env, "SLURM_PROCID"), world_size=world,
                    local_rank=_int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
                    master_addr=env.get("MASTER_ADDR") or first_host(nodelist, expand),
                    master_port=port, launcher="slurm")
    else:
        return DistEnv()
    if not 0 <= d.rank < d.world_size:
        raise ValueError(f"rank {d.rank} is outside world size {d.world_size} ({d.launcher} environment)")
    return d


def init_distributed(env: DistEnv, device: torch.device) -> None:
    """Join the process group (nccl on CUDA, gloo otherwise); no-op unless ``env.distributed``."""
    if not env.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method=f"tcp://{env.master_addr}:{env.master_port}",
                            rank=env.rank, world_size=env.world_size,
                            device_id=device if device.type == "cuda" else None)


def cleanup() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(env: DistEnv, cuda_devices: int | None = None) -> torch.device:
    """This rank's device: ``cuda:(local_rank % visible GPUs)``, or the CPU without CUDA."""
    n = torch.cuda.device_count() if cuda_devices is None else cuda_devices
    return torch.device(f"cuda:{env.local_rank % n}") if n > 0 else torch.device("cpu")


def barrier(device: torch.device) -> None:
    """Wait for every rank (no-op for one process); nccl needs the rank's device."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)
