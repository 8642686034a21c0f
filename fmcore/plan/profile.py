"""Device profiles: measured cost of one sample through each model of an experiment.

``python -m fmcore.plan calibrate --params P`` builds every model of P (the real networks of
``params/<exp>.yaml``), and on the present device (CPU or one GPU, at the training precision)
times, per sample and after warm-up:

* ``train_s``: one training step of the job's objective (forward, backward, Adam) on the
  CFM loss of its path, i.e. what ``fmcore.training.loop`` does per sample;
* ``forward_s``: one field evaluation v_theta(t, x) without gradients (sampling, FID samples,
  the sweep): one NFE of dopri5 costs this;
* ``divergence_s``: one field evaluation with a Hutchinson vector-Jacobian product (one NFE
  of the NLL's augmented ODE, ``fmcore.likelihood.divergence`` with one probe).

Each is timed at two batch sizes, B and b = max(1, B // 8), and stored as an affine cost
per call, ``<q>_call_s + B x <q>_s`` (intercept: the per-call overhead of the solver step,
autograd and kernel launches; slope: per sample), so a part evaluated at a small batch (the
smoke grid's NLL of 8 digits) is not priced at the large batch's per-sample rate. A profile
without ``*_call_s`` (written before) has zero intercepts.

On a CPU each is timed with the job's own ``train.num_threads`` / ``evaluate.num_threads``
(0: all), as the jobs will run.

The batch is the job's per-GPU batch where it fits (``--max-batch`` caps it: a 295 M U-Net at
batch 256 does not run on a laptop CPU in minutes), so on a CPU the per-sample time is
measured at a small batch; per-sample time falls with batch size on a GPU, so the planner
trusts a GPU profile only at the batch it was measured at (stated in its table).
The profile is ``benchmarks/profiles/<device>.json``: ``{"device", "torch", "threads",
"created", "models": {<model key>: {"dataset", "params", "shape", "batch", "precision", "threads",
"train_s", "forward_s", "divergence_s"}}}``; the model key is a hash of the model config, so
a profile applies to any params file using the same networks.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fmcore.io import atomic_write_json

__all__ = ["PROFILE_DIR", "calibrate", "device_name", "load_profile", "model_key", "sample_shape"]

PROFILE_DIR = Path("benchmarks") / "profiles"


def model_key(model_cfg: dict) -> str:
    """A short stable id of a model config (sha256 of its canonical JSON)."""
    return hashlib.sha256(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:16]


def sample_shape(model_cfg: dict) -> tuple[int, ...]:
    """Shape of one data point the model takes: ``(C, H, W)`` for a U-Net, ``(dim,)`` for an MLP."""
    if model_cfg["arch"] == "unet":
        return int(model_cfg["in_channels"]), int(model_cfg["image_size"]), int(model_cfg["image_size"])
    return (int(model_cfg.get("dim", 2)),)


def device_name(device: torch.device) -> str:
    """A file-name-safe device name: the GPU's name, else ``cpu-<processor>-<threads>t``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        cpu = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        name = f"cpu-{cpu}-{torch.get_num_threads()}t"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-").lower()


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _affine(time_at: Callable[[int], float], batch: int) -> tuple[float, float]:
    """(intercept s per call, slope s per sample) from timings at ``batch`` and ``batch // 8``."""
    big = time_at(batch)
    small_batch = max(1, batch // 8)
    if small_batch == batch:
        return 0.0, big / batch
    small = time_at(small_batch)
    slope = (big - small) / (batch - small_batch)
    if slope <= 0:  # noise at tiny costs: per sample only
        return 0.0, big / batch
    return max(big - slope * batch, 0.0), slope


def _measure(job: dict, batch: int, device: torch.device, repeats: int) -> dict[str, Any]:
    from fmcore.likelihood import divergence
    from fmcore.models import build_model
    from fmcore.objectives import build_objective
    from fmcore.paths import build_path

    torch.manual_seed(0)
    model = build_model(job["model"]).to(device)
    path = build_path(job["path"])
    objective = build_objective(job["path"], path)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    shape = sample_shape(job["model"])
    data = torch.randn(batch, *shape, device=device)
    times = torch.rand(batch, device=device)
    x1, t = data, times  # the batch being timed (``at`` narrows it)
    gen = torch.Generator(device).manual_seed(0)
    precision = job["train"].get("precision", "fp32") if device.type == "cuda" else "fp32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = objective(model, x1, gen).float().mean()
        loss.backward()
        opt.step()

    def forward() -> None:
        with torch.no_grad():
            model(x1, t)

    def div() -> None:
        x = x1.detach().requires_grad_(True)
        out = model(x, t)
        divergence(out, x, probes=torch.randn_like(x).unsqueeze(0))

    def at(fn: Callable[[], None]) -> Callable[[int], float]:
        def timed(b: int) -> float:
            nonlocal x1, t
            x1, t = data[:b], times[:b]
            return _time(fn, device, repeats)
        return timed

    # on a CPU, time with the threads the job itself will use (train / evaluate num_threads)
    threads = {k: int(job[k].get("num_threads", 0)) or torch.get_num_threads() for k in ("train", "evaluate")}
    before = torch.get_num_threads()
    out: dict[str, Any] = {}
    try:
        torch.set_num_threads(threads["train"])
        model.train()
        out["train_call_s"], out["train_s"] = _affine(at(train_step), batch)
        torch.set_num_threads(threads["evaluate"])
        model.eval()
        out["forward_call_s"], out["forward_s"] = _affine(at(forward), batch)
        out["divergence_call_s"], out["divergence_s"] = _affine(at(div), batch)
    finally:
        torch.set_num_threads(before)
    return {"dataset": job["dataset"], "params": sum(p.numel() for p in model.parameters()),
            "shape": list(shape), "batch": batch, "precision": precision, "threads": threads, **out}


def calibrate(params: dict, device: torch.device, max_batch: int = 0, repeats: int = 3,
              out_dir: str | Path = PROFILE_DIR, log: Callable[[str], None] = print) -> Path:
    """Measure every distinct model of ``params`` on ``device`` and write its profile.

    Args:
        params: a validated params dict (``fmcore.config.load_params``).
        max_batch: cap on the timed batch (0: the job's per-GPU training batch).
        repeats: timed calls per quantity (the median is kept).

    Returns:
        The profile file (``<out_dir>/<device_name>.json``), merged with an existing one.
    """
    from fmcore.config import resolve_job, seeds_of

    path = Path(out_dir) / f"{device_name(device)}.json"
    profile = load_profile(path) if path.is_file() else {"models": {}}
    for dataset, method in dict.fromkeys((j["dataset"], j["method"]) for j in params["jobs"].values()):
        job = resolve_job(params, dataset, method, seed=seeds_of(params, dataset, method)[0])
        key = model_key(job["model"])
        if key in profile["models"] and profile["models"][key].get("dataset") == dataset:
            continue  # one measurement per network (methods share it: the same U-Net)
        res = job["resources"]
        world = int(res.get("nodes", 1)) * int(res.get("tasks_per_node", max(int(res.get("gpus_per_node", 0)), 1)))
        batch = max(1, int(job["train"]["batch_size"]) // world)
        batch = min(batch, max_batch) if max_batch else batch
        log(f"calibrate {dataset} ({job['model']['arch']}) at batch {batch} on {device} ...")
        profile["models"][key] = _measure(job, batch, device, repeats)
    profile.update({"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    atomic_write_json(path, profile)
    return path


def load_profile(path: str | Path) -> dict:
    """Read a profile file.

    Raises:
        ValueError: unreadable or not a profile (one line naming the file).
    """
    try:
        profile = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read device profile ({exc})") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("models"), dict):
        raise ValueError(f"{path}: not a device profile (no 'models' mapping)")
    return profile
