"""The training loop reads values from the device only at log-window and checkpoint boundaries.

On a GPU every host read of a device value (``.item()``, ``.tolist()``, ``.cpu()``, ``bool(t)``,
...) and every collective whose result is read waits for the queued kernels: one per step would
serialise CPU and GPU. These tests count such reads on the CPU (the same code path) and record
after how many fetched batches each happened: reads may happen only at window boundaries
(``log_every``) and checkpoints, a bounded number each, for one process and for two DDP ranks
(gloo), where a stop requested on one rank stops both at the next boundary.
"""

from __future__ import annotations

import os
import socket
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from fmcore.data import load_split
from fmcore.models import build_model
from fmcore.objectives import build_objective
from fmcore.paths import build_path
from fmcore.training import train_loop
from fmcore.training.checkpoint import load_checkpoint
from fmcore.training.distributed import DistEnv, read_dist_env

from train_util import tiny_job

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
# The dataset gathers rows of a host memmap by host indices (the sampler's, never on the device).
HOST_SIDE = (os.sep + os.path.join("fmcore", "data") + os.sep,)


class _Counting:
    """A dataset wrapper that counts fetched batches; ``steps()``: the number of steps begun so far."""

    def __init__(self, data, chunks_per_step: int) -> None:
        self.data, self.fetched, self.chunks = data, 0, chunks_per_step

    def steps(self) -> int:
        return self.fetched // self.chunks

    def __len__(self) -> int:
        return len(self.data)

    def __setattr__(self, name, value) -> None:
        if name == "generator":  # the loop seeds the dequantization noise of the wrapped set
            setattr(self.data, name, value)
        else:
            object.__setattr__(self, name, value)

    def get_batch(self, indices):
        self.fetched += 1
        return self.data.get_batch(indices)


@contextmanager
def host_reads(clock: Callable[[], int]) -> Iterator[Counter]:
    """Count host reads of tensors and all-reduces, keyed by (clock(), kind)."""
    seen: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}
    original_all_reduce = dist.all_reduce

    def wrap(name: str, fn):
        def counted(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if not any(part in caller for part in HOST_SIDE):
                seen[(clock(), name)] += 1
            return fn(self, *args, **kwargs)
        return counted

    def all_reduce(*args, **kwargs):
        seen[(clock(), "all_reduce")] += 1
        return original_all_reduce(*args, **kwargs)

    for name, fn in originals.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    dist.all_reduce = all_reduce
    try:
        yield seen
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)
        dist.all_reduce = original_all_reduce


def _run(job: dict, run_dir: Path, steps: int, denv: DistEnv, stop_after: int | None) -> tuple[Counter, int]:
    torch.manual_seed(0)
    path = build_path(job["path"])
    data = _Counting(load_split(job["paths"]["data_dir"], "train"),
                     int(job["train"]["micro_batches"]) // denv.world_size)
    objective = build_objective(job["path"], path)
    model = build_model(job["model"])
    with host_reads(data.steps) as seen:
        result = train_loop(model=model, objective=objective, dataset=data, job=job, run_dir=run_dir,
                            steps=steps, device=torch.device("cpu"), denv=denv,
                            should_stop=lambda: stop_after is not None and data.steps() >= stop_after)
    return seen, result.step


def _per_boundary(seen: Counter) -> dict[int, int]:
    out: Counter = Counter()
    for (at, _kind), n in seen.items():
        out[at] += n
    return dict(out)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("sync")
    return tiny_job(folder, "checkerboard", "fm_ot",
                    {"train": {"checkerboard": {"batch_size": 64, "log_every": 25, "checkpoint_every": 50,
                                                "micro_batches": 2}},
                     "evaluate": {"checkerboard": {"during_training": {"every": 1000}}}})


def test_one_process_reads_the_device_once_per_window(job, tmp_path):
    torch.set_num_threads(1)
    seen, step = _run(job, tmp_path / "one", steps=100, denv=DistEnv(), stop_after=None)
    assert step == 100
    per = _per_boundary(seen)
    # reads happen only after 25, 50, 75, 100 fetched steps (none inside a window) ...
    assert set(per) <= {25, 50, 75, 100}, sorted(seen.items())
    # ... a few each: the window's losses (1), the weights' finiteness before a checkpoint (1)
    assert all(n <= 3 for n in per.values()), sorted(seen.items())
    assert sum(per.values()) <= 2 * 4 + 2, sorted(seen.items())


def _ddp_rank(rank: int, job: dict, run_dir: str, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        # rank 1 alone asks to stop after 60 steps: both must stop at the boundary after it (75)
        seen, step = _run(job, Path(run_dir), steps=100, denv=DistEnv(rank=rank, world_size=2),
                          stop_after=60 if rank == 1 else None)
    finally:
        dist.destroy_process_group()
    torch.save({"seen": dict(seen), "step": step}, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_ranks_agree_on_stop_once_per_window(job, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_rank, args=(job, str(tmp_path / "ddp"), port, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        seen = Counter(got["seen"])
        assert got["step"] == 75, (rank, got["step"])  # stopped together, within log_every of the request
        per = _per_boundary(seen)
        # 0: agreement on a start-up signal; then one collective per window, checkpoint at 50, stop at 75
        assert set(per) <= {0, 25, 50, 75}, sorted(seen.items())
        reduces = {at: n for (at, kind), n in seen.items() if kind == "all_reduce"}
        assert reduces == {0: 1, 25: 1, 50: 1, 75: 1}, sorted(seen.items())
        assert all(n <= 3 for n in per.values()), sorted(seen.items())
    assert load_checkpoint(tmp_path / "ddp" / "last.pt")["step"] == 75
    assert not (tmp_path / "ddp" / "checkpoint.pt").exists()


def test_torchrun_with_one_process_runs_the_ddp_code():
    """A 1-rank torchrun job joins a process group (how gpu_check exercises NCCL on one GPU);
    a plain process and a 1-task srun step stay single-process."""
    assert read_dist_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}).distributed
    assert read_dist_env({"RANK": "1", "WORLD_SIZE": "2"}).distributed
    assert not read_dist_env({}).distributed
    assert not read_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).distributed
