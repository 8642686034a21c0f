"""Training: one loop for every method (``loop.train_loop``), with its parts in small modules:
the resume state (``state.TrainState``), LR schedules, EMA, atomic and validated checkpoints,
DDP set-up, RNG capture and the seeded data sampler. The command line is
``python -m fmcore.train`` (``fmcore/train.py``).
"""

from fmcore.training.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from fmcore.training.distributed import DistEnv, init_distributed, read_dist_env
from fmcore.training.ema import EMA
from fmcore.training.loop import TrainResult, train_loop
from fmcore.training.rng import capture_rng, derive_seed, restore_rng
from fmcore.training.sampler import BatchSampler
from fmcore.training.schedule import build_scheduler, lr_at
from fmcore.training.state import TrainState

__all__ = [
    "EMA",
    "FORMAT",
    "BatchSampler",
    "CheckpointError",
    "DistEnv",
    "TrainResult",
    "TrainState",
    "build_scheduler",
    "capture_rng",
    "derive_seed",
    "init_distributed",
    "load_checkpoint",
    "lr_at",
    "read_dist_env",
    "restore_rng",
    "save_checkpoint",
    "train_loop",
]
