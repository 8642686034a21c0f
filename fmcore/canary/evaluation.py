"""The canary's evaluation batches on a reloaded checkpoint: NLL (with the divergence), sampling, features.

One field evaluation per part (one NFE of the solve the part runs), at the configured batch:
``nll`` (``nll.batch_size``) and ``dt_nll`` (``during_training.nll_n``) with their divergence,
exact or Hutchinson with the configured probes; ``sample`` without gradients at
``quality.batch_size``; ``features``: the quality metric's network on that batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fmcore.canary.checks import JobCheck, PartCheck, fit_batch
from fmcore.canary.synthetic import SyntheticDataset

__all__ = ["evaluate_parts"]


def _probes(x: torch.Tensor, k: int, kind: str) -> torch.Tensor:
    shape = (k, *x.shape)
    if kind == "gaussian":
        return torch.randn(shape, device=x.device, dtype=x.dtype)
    return torch.randint(0, 2, shape, device=x.device).to(x.dtype) * 2.0 - 1.0


def _features(job: dict, synthetic: bool, device: torch.device) -> tuple[Callable | None, str]:
    """``(features(x) or None, note)`` for the job's quality metric."""
    from fmcore.metrics.fid import image_features, load_inception, model_to_uint8, resolve_inception_weights
    from fmcore.metrics.standin import DigitsCNN, digits_features

    q = job["evaluate"]["quality"]
    if q["metric"] == "w2_2d":
        return None, "the samples are the features (w2_2d)"
    if q["metric"] == "fd_digits":
        net = DigitsCNN(image_size=int(job["model"]["image_size"]))
        return lambda x: digits_features(net, model_to_uint8(x)), "untrained digits CNN (same cost)"
    try:
        weights = resolve_inception_weights(q.get("inception_weights"), job["dataset"])
    except ValueError:
        if synthetic:  # before any download: the dry run of the workflow names the missing file
            where = os.environ.get("FMREPRO_INCEPTION_WEIGHTS") or q.get("inception_weights") or "(none set)"
            return None, f"features skipped: no Inception file {where}"
        raise
    net = load_inception(weights, device)
    return lambda x: image_features(model_to_uint8(x), net, device), "Inception (clean-fid)"


def evaluate_parts(job: dict, checkpoint: Path | None, test: object, device: torch.device, check: JobCheck,
                   cap: int, synthetic: bool, reloaded: torch.nn.Module | None = None) -> torch.nn.Module:
    """Reload ``checkpoint`` as evaluation does (or, when it is None, take the network ``reloaded``
    from another job's checkpoint, read through this job's path), then run one batch of each part
    into ``check``. Returns the reloaded network."""
    from types import SimpleNamespace

    from fmcore.evaluation.model import field_of, load_eval_model
    from fmcore.likelihood import divergence

    cfg = job["evaluate"]
    if checkpoint is not None:
        start = time.perf_counter()
        ev = load_eval_model(job, checkpoint, use_ema=bool(cfg.get("ema", True)), device=device)
        check.load_seconds = round(time.perf_counter() - start, 3)
        reloaded = ev.network
    elif reloaded is None:
        raise ValueError("evaluate_parts: neither a checkpoint nor a reloaded network")
    else:  # frozen, as load_eval_model leaves it
        reloaded.to(device).eval().requires_grad_(False)
        v, path, _ = field_of(reloaded, job["path"])
        ev = SimpleNamespace(v=v, path=path)
    shape = tuple(test.get_batch(np.arange(1)).shape[1:])

    def nll(section: dict) -> Callable[[int], None]:
        def run(batch: int) -> None:
            if isinstance(test, SyntheticDataset):
                test.length = max(test.length, batch)
            x = test.get_batch(np.arange(min(batch, len(test)))).to(device)
            probes = None if section.get("exact", True) else _probes(
                x, int(section.get("hutchinson_samples", 1)), str(section.get("probe", "rademacher")))
            with torch.enable_grad():
                x = x.requires_grad_(True)
                div = divergence(ev.v(torch.tensor(ev.path.t_max, device=device), x), x, probes)
            if not bool(div.isfinite().all()):
                raise FloatingPointError("non-finite divergence")
        return run

    samples: dict[str, torch.Tensor] = {}

    def sample(batch: int) -> None:
        noise = torch.randn(batch, *shape, device=device) * ev.path.prior_std
        with torch.no_grad():
            out = ev.v(torch.tensor(0.0, device=device), noise)
        if not bool(out.isfinite().all()):
            raise FloatingPointError("non-finite field at t = 0")
        samples["x"] = noise.clamp(-1.0, 1.0)

    dt = cfg.get("during_training") or {}
    section = cfg["nll"]
    jobs_parts: list[tuple[str, int, Callable[[int], None], str]] = [
        ("nll", int(cfg["nll"].get("batch_size", cfg["nll"]["n"])), nll(cfg["nll"]), "nll.batch_size")]
    if int(dt.get("nll_n", 0)) > 0:
        section = {**cfg["nll"], **({"exact": dt["nll_exact"]} if "nll_exact" in dt else {})}
        jobs_parts.append(("dt_nll", int(dt["nll_n"]), nll(section), "during_training.nll_n"))
    jobs_parts.append(("sample", int(cfg["quality"]["batch_size"]), sample, "quality.batch_size"))
    for name, wanted, run, key in jobs_parts:
        part = PartCheck(name, wanted, wanted)
        capped = min(wanted, cap or wanted)
        same = name == "dt_nll" and section == cfg["nll"] and check.parts[-1].batch == capped
        if same and check.parts[-1].status == "ok":  # the cap made it the nll batch again: not re-run
            part.batch, part.seconds, part.note = check.parts[-1].batch, check.parts[-1].seconds, "= nll"
            check.parts.append(part)
            continue
        fit_batch(part, run, device, cap)
        check.parts.append(part)
        if part.status == "oom":
            check.advice.append(f"{name}: a batch of {wanted} does not fit, {part.batch} does: set "
                                f"evaluate.{job['dataset']}.{key} <= {part.batch}")
    features, note = _features(job, synthetic, device)
    q_metric = cfg["quality"]["metric"]
    wanted = int(cfg["quality"]["batch_size"])
    part = PartCheck("features", wanted, check.parts[-1].batch, note=note)

    def featurize(batch: int) -> None:
        features(samples["x"][:batch])

    if features is None:
        part.status = "skip" if q_metric != "w2_2d" else "n/a"
    else:  # on the batch the sampler produced (the cap or its OOM halving already applied)
        fit_batch(part, featurize, device, check.parts[-1].batch)
    check.parts.append(part)
    return reloaded
