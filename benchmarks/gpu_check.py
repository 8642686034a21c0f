"""GPU readiness: one command that runs every CUDA path of fmrepro once and measures it.

    python benchmarks/gpu_check.py [--out gpu_check.json]          # on a GPU node (< 8 min)
    srun --gpus=1 --time=15 .venv/bin/python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --cpu                            # toy sizes on the CPU (CI)

Checks (docs/gpu.md lists each criterion):

1. train: the paper's CIFAR-10 U-Net (params/paper.yaml) through ``train_loop`` at the paper's
   per-GPU batch: images/s in fp32 eager, bf16 autocast eager and bf16 + ``torch.compile``, the
   ratios to fp32, peak memory, and the first windows' loss bf16 vs fp32 (``gpu_checks.throughput``);
2. resume: ``python -m fmcore.train`` in a 1-rank process group (NCCL; gloo with ``--cpu``),
   SIGTERM, resume, weights compared with an uninterrupted run (``gpu_checks.resume``);
3. eval: the short-trained digits model of check 2 on the device: dopri5 NFE, Hutchinson NLL,
   the FID path with a STAND-IN TorchScript feature network (``gpu_checks.evaluation``);
4. sample: dopri5 samples/s of the CIFAR-10 U-Net at batch 500.

Prints a table, writes the JSON (device, rows, passed) and exits 1 if any row failed (a check
that raised is a failed row with the error). ``--cpu`` skips what needs CUDA (bf16 autocast,
memory) and torch.compile, each as a ``SKIP`` row with the reason, never as a pass.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_checks/, beside this file

import torch  # noqa: E402

from gpu_checks.common import Row, Sizes, as_json, device_info, table  # noqa: E402


def _guarded(name: str, fn: Callable[[], list[Row]]) -> list[Row]:
    """Run one check; an exception becomes a failed row naming it (the other checks still run)."""
    t0 = time.perf_counter()
    try:
        rows = fn()
    except Exception as exc:  # noqa: BLE001 - reported as a failed row, with the error
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        rows = [Row(name, "check raised", type(exc).__name__, "fail", "no exception", first)]
    print(f"gpu_check: {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the checks; 0 if every judged row passed, 1 if one failed, 2 without a usable device."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="toy sizes on the CPU (gloo, no bf16/compile)")
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="JSON results file")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads with --cpu (1: on a shared 2-core machine 2 threads ran 20x slower)")
    args = p.parse_args(argv)
    if args.cpu:
        torch.set_num_threads(args.threads)
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda:0")
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # as python -m fmcore.train on a GPU
        torch.backends.cudnn.allow_tf32 = True
    else:
        print("gpu_check: no CUDA device visible; run it on a GPU node (srun --gpus=1 ...) or pass --cpu",
              file=sys.stderr)
        return 2
    from gpu_checks.evaluation import check_evaluation, check_sampling_speed
    from gpu_checks.resume import check_resume
    from gpu_checks.throughput import check_training

    sizes = Sizes.for_mode(args.cpu)
    t0 = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        rows += _guarded("train", lambda: check_training(sizes, device))
        resumed: dict = {}

        def resume() -> list[Row]:
            r, ckpt, job = check_resume(sizes, Path(tmp))
            resumed.update(checkpoint=ckpt, job=job)
            return r

        rows += _guarded("resume", resume)
        rows += _guarded("eval", lambda: check_evaluation(sizes, resumed.get("job", {}),
                                                          resumed.get("checkpoint"), device))
        rows += _guarded("sample", lambda: check_sampling_speed(sizes, device))
    failed = [r for r in rows if r.status == "fail"]
    info = device_info(device)
    print(f"gpu_check on {info['name']} ({info['device']}, torch {info['torch']}), "
          f"{'--cpu (toy sizes)' if args.cpu else 'GPU sizes'}, {time.perf_counter() - t0:.0f} s")
    print(table(rows))
    print(f"{len(failed)} failed, {sum(r.status == 'pass' for r in rows)} passed, "
          f"{sum(r.status == 'skip' for r in rows)} skipped")
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "mode": "cpu" if args.cpu else "gpu", "host": os.uname().nodename, **info,
              "seconds": round(time.perf_counter() - t0, 1), "passed": not failed, "rows": as_json(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
