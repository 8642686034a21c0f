"""Checkpoint disk of a params file's grid, from measured bytes per parameter.

    .venv/bin/python benchmarks/checkpoint_disk.py [--params params/paper.yaml]

1. Measures the bytes per parameter of the two checkpoint kinds the trainer writes, by
   running the real ``train_loop`` for two updates of a scaled-down ADM U-Net (channel
   width 32; same layers as the paper's) on random data: a resume *state* (``last.pt`` /
   ``checkpoint.pt``: weights, EMA, Adam moments, RNG) and Fig. 5's *weights* snapshot
   (``checkpoints/step_<N>.pt``: header + EMA weights).
2. Multiplies by each job's parameter count (``fmcore.models.count_parameters``) and file
   counts: one state (``last.pt`` is a hard link to ``checkpoint.pt`` once finished; one
   more transiently while it is rewritten), ``steps // during_training.every - 1`` weights
   snapshots (the last one is a hard link to ``checkpoint.pt``), and, for comparison, the
   former layout: a full state every ``checkpoint_every`` steps.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fmcore.config import load_params, resolve_job
from fmcore.models import build_model, count_parameters
from fmcore.objectives import build_objective
from fmcore.paths import build_path
from fmcore.training import train_loop


class _RandomImages:
    """A dataset stand-in: len() and get_batch(indices) of random images."""

    def __init__(self, shape: tuple[int, ...], n: int = 64) -> None:
        self.x, self.generator = torch.randn(n, *shape), None

    def __len__(self) -> int:
        return len(self.x)

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.x[indices]


def measure(params: dict) -> tuple[float, float, int]:
    """(bytes/parameter of a state, of a weights snapshot, parameters of the measured model)."""
    dataset, method = next(iter((j["dataset"], j["method"]) for j in params["jobs"].values()))
    job = copy.deepcopy(resolve_job(params, dataset, method))
    job["model"] = {**job["model"], "model_channels": 32, "num_head_channels": -1, "num_heads": 2}
    job["train"] = {**job["train"], "batch_size": 2, "micro_batches": 1, "checkpoint_every": 1,
                    "lr_schedule": {"kind": "constant"}, "compile": False, "precision": "fp32"}
    job["evaluate"] = {**job["evaluate"], "during_training": {"every": 1}, "ema": True}
    model = build_model(job["model"])
    n = sum(p.numel() for p in model.parameters())
    size = job["model"]["image_size"]
    path = build_path(job["path"])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        train_loop(model=model, objective=build_objective(job["path"], path),
                   dataset=_RandomImages((job["model"]["in_channels"], size, size)), job=job, run_dir=run_dir,
                   steps=2, device=torch.device("cpu"))
        state = (run_dir / "checkpoint.pt").stat().st_size
        weights = (run_dir / "checkpoints" / "step_1.pt").stat().st_size
    return state / n, weights / n, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params" / "paper.yaml")
    args = ap.parse_args()
    torch.set_num_threads(2)
    params = load_params(args.params)
    per_state, per_weights, n = measure(params)
    print(f"measured on a {n / 1e6:.2f} M-parameter U-Net: state {per_state:.2f} B/param, "
          f"weights snapshot {per_weights:.2f} B/param")
    print("| dataset | params (M) | state (GB) | snapshot (GB) | snapshots/job | jobs | disk (GB) | "
          "former layout (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    total = former_total = 0.0
    for dataset in params["datasets"]:
        jobs = [j for j in params["jobs"].values() if j["dataset"] == dataset]
        if not jobs:
            continue
        job = resolve_job(params, dataset, jobs[0]["method"])
        p = count_parameters(job["model"])
        steps, every = int(job["train"]["steps"]), int(job["evaluate"]["during_training"]["every"])
        snapshots = steps // every - (1 if steps % every == 0 else 0)
        state_gb, weights_gb = p * per_state / 1e9, p * per_weights / 1e9
        disk = len(jobs) * (2 * state_gb + snapshots * weights_gb)  # 2: checkpoint.pt + a last.pt rewrite
        former = len(jobs) * (steps // int(job["train"]["checkpoint_every"]) + 1) * state_gb
        total, former_total = total + disk, former_total + former
        print(f"| {dataset} | {p / 1e6:.1f} | {state_gb:.2f} | {weights_gb:.2f} | {snapshots} | {len(jobs)} | "
              f"{disk:.0f} | {former:.0f} |")
    print(f"| **total** | | | | | | **{total:.0f}** | {former_total:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
