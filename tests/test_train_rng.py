"""RNG capture/restore, the seeded sampler, derived seeds, and the DDP environment reader."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fmcore.training.distributed import DistEnv, first_host, read_dist_env
from fmcore.training.rng import capture_rng, derive_seed, restore_rng
from fmcore.training.sampler import BatchSampler


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_capture_restore_replays_every_rng(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # leave a cached gaussian behind
    state = capture_rng({"epoch": 4, "position": 256})
    torch.save(state, tmp_path / "rng.pt")
    first = _draws()
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)  # plain containers only
    assert restore_rng(loaded) == {"epoch": 4, "position": 256}
    assert _draws() == first
    with pytest.raises(ValueError, match="lacks"):
        restore_rng({"torch": state["torch"]})


def test_derive_seed_is_deterministic_and_distinct():
    assert derive_seed(0, 5, 1) == derive_seed(0, 5, 1)
    seeds = {derive_seed(0, s, k) for s in range(50) for k in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)


def test_sampler_epochs_and_resume():
    s = BatchSampler(10, 4, seed=0)
    batches = [s.next_indices().tolist() for _ in range(4)]
    # two batches per epoch (the incomplete tail is dropped), each epoch without repeats
    assert len(set(batches[0] + batches[1])) == 8 and len(set(batches[2] + batches[3])) == 8
    assert batches[0] + batches[1] != batches[2] + batches[3]  # reshuffled
    s2 = BatchSampler(10, 4, seed=0)
    s2.next_indices()
    s3 = BatchSampler(10, 4, seed=0)
    s3.load_state_dict(s2.state_dict())
    assert [s3.next_indices().tolist() for _ in range(3)] == batches[1:]
    assert BatchSampler(10, 4, seed=1).next_indices().tolist() != batches[0]
    with pytest.raises(ValueError, match="batch_size=11"):
        BatchSampler(10, 11, seed=0)


def test_read_dist_env_torchrun_slurm_and_single():
    assert read_dist_env({}) == DistEnv()
    tr = read_dist_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h0",
                        "MASTER_PORT": "1234"})
    assert (tr.rank, tr.world_size, tr.local_rank, tr.master_addr, tr.master_port, tr.launcher) == \
        (3, 8, 1, "h0", 1234, "torchrun")
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
           "SLURM_NODELIST": "gpu[07-10]"}
    sl = read_dist_env(env, expand=lambda nodes: ["gpu07", "gpu08", "gpu09", "gpu10"])
    assert (sl.rank, sl.world_size, sl.local_rank, sl.master_addr, sl.master_port, sl.launcher) == \
        (5, 8, 1, "gpu07", 20000 + 123456 % 20000, "slurm")
    assert not sl.is_main and read_dist_env({}).is_main
    # one task (a plain sbatch job) is a single process
    assert read_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == DistEnv()
    with pytest.raises(ValueError, match="rank 8 is outside world size 8"):
        read_dist_env({"RANK": "8", "WORLD_SIZE": "8"})
    with pytest.raises(ValueError, match="SLURM_NTASKS='two'"):
        read_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "two"})


def test_first_host_without_scontrol():
    assert first_host("node[01-04,09],gpu7", expand=None) == "node01"
    assert first_host("gpu7,node1", expand=None) == "gpu7"
    assert first_host("n[3-4]", expand=lambda _: []) == "n3"
