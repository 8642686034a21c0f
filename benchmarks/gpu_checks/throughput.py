"""Training throughput of the paper's CIFAR-10 U-Net through ``train_loop``: fp32 / bf16 / compile.

Measured: images per second of ``fmcore.training.train_loop`` (Adam, clipping, EMA, the LR
schedule, seeded noise per chunk, logging every ``window`` steps: what a real run does) at the
paper's per-GPU batch (``train.cifar10.batch_size`` / GPUs of ``resources.cifar10`` in
params/paper.yaml), as the median over the timed windows after the first one (warm-up and
compilation); the peak CUDA memory of each mode; and the mean loss of the first windows, bf16
vs fp32 from the same seed (the same data, noise and initial weights). TF32 is on, as in
``python -m fmcore.train`` on a GPU. The loss comparison uses a constant LR without warm-up
(params/paper.yaml warms up over 45,000 steps: the weights would hardly move in a few steps).
The data are synthetic images (:class:`SyntheticImages`): a step costs the same on any content.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fmcore.config import load_params, resolve_job
from fmcore.models import build_model
from fmcore.objectives import build_objective
from fmcore.paths import build_path
from fmcore.training import train_loop

from gpu_checks.common import REPO, Row, Sizes, SyntheticImages, finite, judged
from gpu_checks.syncs import SyncRecorder, count_cuda_syncs, syncs_per_window

LOSS_RTOL = 0.02  # |loss_bf16 - loss_fp32| / loss_fp32 of each window mean, first 2 windows
MIN_COMPILE_RATIO = 1.0  # bf16 + torch.compile must not be slower than fp32 eager
MAX_SYNCS_PER_WINDOW = 2  # the window's one .tolist() (+1 spare); one per step would be `window`


def _paper_job() -> tuple[dict, int]:
    """The resolved cifar10/fm_ot job of params/paper.yaml and its per-GPU batch."""
    job = resolve_job(load_params(REPO / "params" / "paper.yaml"), "cifar10", "fm_ot")
    res = job["resources"]
    gpus = int(res.get("nodes", 1)) * int(res.get("gpus_per_node", 1))
    return job, int(job["train"]["batch_size"]) // max(gpus, 1)


def _one_mode(job: dict, sizes: Sizes, device: torch.device, precision: str, compile_: bool,
              folder: Path, count_syncs: bool = False) -> dict:
    """Train ``window * (windows + 1)`` steps in one mode; throughput, memory and window losses
    (with ``count_syncs``, on CUDA, also the host syncs per window: :mod:`gpu_checks.syncs`)."""
    job = copy.deepcopy(job)
    steps = sizes.window * (sizes.windows + 1)
    tcfg = job["train"]
    tcfg.update(precision=precision, compile=compile_, log_every=sizes.window, checkpoint_every=steps,
                micro_batches=1, lr_schedule={"kind": "constant", "warmup_steps": 0})
    job["evaluate"] = {}  # no Fig. 5 snapshots
    torch.manual_seed(int(tcfg["seed"]))
    model = build_model(job["model"])
    path = build_path(job["path"])
    m = job["model"]
    data = SyntheticImages(4 * int(tcfg["batch_size"]), int(m["in_channels"]), int(m["image_size"]))
    tracker = SyncRecorder()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with count_cuda_syncs(tracker.events) if count_syncs else contextlib.nullcontext():
        train_loop(model=model, objective=build_objective(job["path"], path), dataset=data, job=job,
                   run_dir=folder / f"{precision}-{int(compile_)}-{int(count_syncs)}", steps=steps,
                   device=device, tracker=tracker, progress_stream=io.StringIO())
    wall = time.perf_counter() - t0
    sps = [r["samples_per_s"] for _, r in tracker.records]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"images_per_s": statistics.median(sps[1:]),
            "first_window_s": sizes.window * int(tcfg["batch_size"]) / sps[0],
            "losses": [r["loss"] for _, r in tracker.records], "wall_s": wall, "peak_mem_gib": peak,
            "syncs_per_window": syncs_per_window(tracker.events) if count_syncs else None}


def check_training(sizes: Sizes, device: torch.device) -> list[Row]:
    """The training rows: throughput per mode, ratios, memory, loss agreement."""
    job, per_gpu = _paper_job()
    job["model"] = sizes.unet(job["model"])
    job["train"]["batch_size"] = 8 if sizes.cpu else per_gpu
    batch = job["train"]["batch_size"]
    what = (f"CIFAR-10 U-Net {'(toy widths, CPU)' if sizes.cpu else '(paper config)'}, batch {batch}"
            f"{'' if sizes.cpu else ' (paper per-GPU)'}")
    modes = [("fp32", False), ("bf16", False), ("bf16", True)]
    skip = {}
    if sizes.cpu:
        skip[("bf16", False)] = "train_loop autocasts on CUDA only (the CPU trains in fp32)"
        skip[("bf16", True)] = "torch.compile skipped on the CPU (minutes of compilation on 2 cores)"
    rows: list[Row] = []
    out: dict[tuple[str, bool], dict] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-train-") as tmp:
        for precision, compile_ in modes:
            name = precision + (" + compile" if compile_ else " eager")
            if (precision, compile_) in skip:
                rows.append(Row("train", f"{name} images/s", None, "skip", note=skip[(precision, compile_)]))
                continue
            try:  # one failing mode (say, compilation) must not hide the others' numbers
                r = out[(precision, compile_)] = _one_mode(job, sizes, device, precision, compile_, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - reported as a failed row, with the error
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                rows.append(Row("train", f"{name} images/s", type(exc).__name__, "fail", "no exception",
                                first))
                continue
            rows.append(judged("train", f"{name} images/s", r["images_per_s"],
                               finite(r["images_per_s"], *r["losses"]) and r["images_per_s"] > 0,
                               "measured, > 0, losses finite",
                               f"{what}; median of {sizes.windows} windows of {sizes.window} steps after a "
                               f"warm-up window of {r['first_window_s']:.1f} s"))
            if r["peak_mem_gib"] is not None:
                rows.append(Row("train", f"{name} peak memory GiB", r["peak_mem_gib"], "info",
                                note="torch.cuda.max_memory_allocated"))
    base = out.get(("fp32", False))
    for key, label in ((("bf16", False), "bf16 eager / fp32"), (("bf16", True), "bf16 + compile / fp32")):
        if key not in out or base is None:
            rows.append(Row("train", f"ratio {label}", None, "skip", note="a mode was not run"))
            continue
        ratio = out[key]["images_per_s"] / base["images_per_s"]
        if key == ("bf16", True):
            rows.append(judged("train", f"ratio {label}", ratio, ratio >= MIN_COMPILE_RATIO,
                               f">= {MIN_COMPILE_RATIO}", "images/s over fp32 eager (TF32 on)"))
        else:
            rows.append(Row("train", f"ratio {label}", ratio, "info",
                            note="images/s over fp32 eager (TF32 on)"))
    rows.append(_sync_row(job, sizes, device))
    bf16 = out.get(("bf16", False))
    if bf16 is None or base is None:
        rows.append(Row("train", "loss bf16 vs fp32, first windows", None, "skip",
                        note="needs both fp32 and bf16 runs (CUDA)"))
    else:
        n = 2
        rel = max(abs(a - b) / abs(b) for a, b in zip(bf16["losses"][:n], base["losses"][:n]))
        rows.append(judged("train", f"loss bf16 vs fp32, first {n * sizes.window} steps (max rel. diff)", rel,
                           finite(rel) and rel <= LOSS_RTOL, f"<= {LOSS_RTOL}",
                           "window means, same seed: fp32 "
                           + ", ".join(f"{v:.5f}" for v in base["losses"][:n])
                           + "; bf16 " + ", ".join(f"{v:.5f}" for v in bf16["losses"][:n])))
    return rows


def _sync_row(job: dict, sizes: Sizes, device: torch.device) -> Row:
    """Host syncs per log window of fp32 train_loop on CUDA (a separate, untimed run)."""
    metric = "host syncs per window of train_loop"
    if device.type != "cuda":
        return Row("train", metric, None, "skip", note="CUDA's sync debug mode needs a GPU; on the CPU "
                   "tests/test_train_sync.py counts host reads (1 per window)")
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-check-syncs-") as tmp:
            r = _one_mode(job, sizes, device, "fp32", False, Path(tmp), count_syncs=True)
    except Exception as exc:  # noqa: BLE001 - reported as a failed row, with the error
        return Row("train", metric, type(exc).__name__, "fail", "no exception",
                   (str(exc).strip().splitlines() or [""])[0][:200])
    per_window = r["syncs_per_window"]
    return judged("train", metric, per_window, per_window <= MAX_SYNCS_PER_WINDOW,
                  f"<= {MAX_SYNCS_PER_WINDOW} (a window is {sizes.window} steps)",
                  "torch.cuda.set_sync_debug_mode('warn'), fp32 eager, whole windows after the first")
