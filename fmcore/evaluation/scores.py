"""NLL on the test split and the quality metric of dopri5 samples (with their NFE).

Both run in batches through :class:`fmcore.evaluation.io.BatchCache`, so an interrupted
evaluation resumes at the first unfinished batch. Seeds: test points are a seeded
permutation of the test split (stream ``nll_points``), dequantization noise and sample noise
are drawn per batch from :func:`fmcore.evaluation.context.seeded_generator`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmcore.evaluation.context import EvalContext, guard_solver, seeded_generator, standard_noise
from fmcore.evaluation.io import BatchCache
from fmcore.evaluation.model import EvalModel
from fmcore.evaluation.quality import QualityMetric
from fmcore.metrics.nll import batch_log_prob, summarize_2d, summarize_images
from fmcore.sampling import sample_path

__all__ = ["nll_metrics", "quality_metrics", "test_indices"]


def _positive(ctx: EvalContext, key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"evaluate.{ctx.job['dataset']}.{key}: {value!r}, expected a positive integer")
    return value


def test_indices(ctx: EvalContext, n: int) -> np.ndarray:
    """The first ``n`` indices of a seeded permutation of the test split (all if n >= size)."""
    gen = seeded_generator(ctx.seed, "nll_points")
    import torch

    perm = torch.randperm(len(ctx.test), generator=gen).numpy()
    return np.sort(perm[: min(n, len(perm))])


def nll_metrics(
    ctx: EvalContext, model: EvalModel, nll_cfg: dict, n: int, cache_dir: Path, fingerprint: dict,
    shard: tuple[int, int] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]] | None:
    """NLL of ``model`` on ``n`` test points: bits/dim (images) or nats (2D), mean and s.e.

    Returns:
        ``(metrics, arrays)``: metrics ``nll_bpd``/``nll_bpd_se`` or ``nll_nats``/``nll_nats_se``
        (images with ``nll.dequant_samples`` = K > 1: the K-sample importance-weighted
        estimate log (1/K) sum_k p_y((x + u_k)/256 scaled), as in the paper, and beside it
        ``nll_bpd_k1``/``nll_bpd_k1_se``, the mean over k of the one-sample estimates. With a
        Hutchinson divergence each log p_y carries probe noise, and log-mean-exp of noisy terms
        is biased low (Jensen), so the K estimate is not a strict upper bound on the NLL; the
        K = 1 estimate is unbiased for the one-sample dequantization bound, which is one)
        (+ ``nll_nats_true``, ``nll_nats_gap`` for a known 2D density) and ``nll_nfe`` (mean
        dopri5 NFE per batch); arrays ``logp`` [n] (nats, model space) and ``index`` [n].
        None for a shard (``shard=(s, S)``: only its batches are computed, into the cache).
    """
    n = _positive(ctx, "nll.n", n)
    bs = _positive(ctx, "nll.batch_size", int(nll_cfg.get("batch_size", n)))
    idx = test_indices(ctx, n)
    n_batches = -(-len(idx) // bs)
    cache = BatchCache(cache_dir, fingerprint)

    k_deq = int(nll_cfg.get("dequant_samples", 1)) if ctx.is_image else 1
    if k_deq < 1:
        raise ValueError(f"evaluate.{ctx.job['dataset']}.nll.dequant_samples: {k_deq}, expected >= 1")
    what = f"nll {ctx.job['dataset']}/{ctx.job['method']} step {model.step}"

    def batch(i: int) -> dict[str, np.ndarray]:
        logps, nfes = [], []
        for k in range(k_deq):  # K uniform dequantizations per image (importance-weighted estimate)
            ctx.test.generator = seeded_generator(ctx.seed, "nll_dequant", i * k_deq + k)
            x_1 = ctx.test.get_batch(idx[i * bs : (i + 1) * bs]).to(model.device)
            out = guard_solver(what, batch_log_prob, model.v, model.path, x_1, nll_cfg,
                               generator=seeded_generator(ctx.seed, "nll_probe", i * k_deq + k))  # fmt: skip
            logps.append(out["logp"])
            nfes.append(out["nfe"])
        logp = np.stack(logps)  # [K, B]: log (1/K sum_k p(x + u_k)), stable
        top = logp.max(axis=0)
        iw = top + np.log(np.exp(logp - top).mean(axis=0))
        x = x_1.cpu().numpy() if not ctx.is_image else np.zeros((len(x_1), 0), np.float32)
        return {"logp": iw, "logp_k1": logp.mean(axis=0), "nfe": np.concatenate(nfes), "x": x}

    res = cache.run(n_batches, batch, desc=f"nll {ctx.job['dataset']}/{ctx.job['method']} step {model.step}",
                    shard=shard)
    if res is None:  # shard s of S: its batches are on disk, the merge computes the metrics
        return None
    if ctx.is_image:
        metrics = summarize_images(res["logp"], int(np.prod(ctx.sample_shape)))
        if k_deq > 1 and "logp_k1" in res:  # the K = 1 estimate beside the K-sample one (docstring)
            k1 = summarize_images(res["logp_k1"], int(np.prod(ctx.sample_shape)))
            metrics.update(nll_bpd_k1=k1["nll_bpd"], nll_bpd_k1_se=k1["nll_bpd_se"])
    else:
        metrics = summarize_2d(res["logp"], res["x"], ctx.job["data"].get("shape"))
    metrics["nll_nfe"] = float(res["nfe"].mean())
    cache.clear()
    return metrics, {"logp": res["logp"], "index": idx}


def quality_metrics(
    ctx: EvalContext, model: EvalModel, quality: QualityMetric, n_samples: int, batch_size: int,
    cache_dir: Path, fingerprint: dict, stream: str = "quality", tol: dict | None = None,
    shard: tuple[int, int] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]] | None:
    """Quality metric of ``n_samples`` dopri5 samples and their mean NFE per batch.

    Tolerances ``tol`` (``{"atol", "rtol"}``), by default ``evaluate.<ds>.nfe`` (atol = rtol =
    1e-5 in the paper).

    Returns:
        ``(metrics, arrays)``: metrics ``quality``, the metric's own name (e.g. ``fd_digits``)
        and extras (``fd_2d``), ``nfe``, and ``nfe_batch_size`` (dopri5 picks one step size
        for a whole batch, so the NFE per batch depends on it); arrays ``nfe`` [num_batches].
    """
    n_samples = _positive(ctx, "quality.n_samples", n_samples)
    bs = _positive(ctx, "quality.batch_size", batch_size)
    tol = tol or ctx.cfg["nfe"]
    cache = BatchCache(cache_dir, fingerprint)

    def batch(i: int) -> dict[str, np.ndarray]:
        m = min(bs, n_samples - i * bs)
        noise = standard_noise(m, ctx.sample_shape, ctx.seed, stream, i, device=model.device)
        what = f"samples {ctx.job['dataset']}/{ctx.job['method']} step {model.step}"
        x_1, nfe = guard_solver(what, sample_path,
                                model.v, model.path, noise, method="dopri5", atol=float(tol["atol"]),
                               rtol=float(tol["rtol"]))  # fmt: skip
        return {"features": quality.features(x_1), "nfe": np.array([nfe], dtype=np.int64)}

    desc = f"{quality.name} samples {ctx.job['dataset']}/{ctx.job['method']} step {model.step}"
    res = cache.run(-(-n_samples // bs), batch, desc=desc, shard=shard)
    if res is None:  # shard s of S (see nll_metrics)
        return None
    scores = quality.score(res["features"])
    metrics = {"quality": scores[quality.name], **scores, "nfe": float(res["nfe"].mean()),
               "nfe_batch_size": float(bs)}
    cache.clear()
    return metrics, {"nfe": res["nfe"]}
