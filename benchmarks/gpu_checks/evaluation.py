"""Evaluation on the device: dopri5 samples, Hutchinson NLL, the FID path, CIFAR U-Net sampling speed.

The short-trained model is the digits U-Net of the resume check's uninterrupted run, loaded
as evaluation loads it (``fmcore.evaluation.model.load_eval_model``, EMA weights). Measured:

* dopri5 sampling (``fmcore.sampling.sample_path``, the NFE tolerances of evaluate.digits):
  NFE and samples/s;
* Hutchinson NLL of test images (``fmcore.likelihood.log_prob_path``, one Rademacher probe)
  in bits/dim (``bits_per_dim``): must be finite and below the untrained model's (v = 0, which
  scores the N(0, I) prior alone: what training must improve on);
* the FID path of ``fmcore.metrics.fid``: ``model_to_uint8``, clean-fid's "clean" resizer to
  299 x 299, a TorchScript feature network run on the device, reference statistics saved and
  loaded as clean-fid names them, the Frechet distance. The feature network is a STAND-IN (a
  seeded random conv net saved with ``torch.jit.save`` and loaded with ``torch.jit.load``):
  the real ``inception-2015-12-05.pt`` is not available here, so the distances are not FID;
  criterion: the samples are nearer the training set than uniform noise images are;
* dopri5 samples/s of the CIFAR-10 U-Net (paper config, toy widths on the CPU) at the paper's
  evaluation batch (500). Its weights are untrained, with the zero-initialised layers set to
  N(0, 0.02) so the field is not 0: the NFE is not a trained model's; the time per function
  evaluation is what carries over.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmcore.config import load_params
from fmcore.data import load_split
from fmcore.evaluation.model import load_eval_model
from fmcore.likelihood import bits_per_dim, log_prob_path
from fmcore.metrics.fid import fid_from_features, image_features, model_to_uint8, save_stats, stats_filename
from fmcore.models import build_model
from fmcore.paths import build_path, velocity_field
from fmcore.sampling import sample_path

from gpu_checks.common import REPO, Row, Sizes, finite, judged


class StandInFeatures(nn.Module):
    """STAND-IN for Inception-v3: [B, 3, 299, 299] in [0, 255] -> [B, 16] (random conv, tanh, mean)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 16, kernel_size=13, stride=13)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.05)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.tanh(self.conv(x / 127.5 - 1.0)).mean(dim=(2, 3))


def _stand_in_network(folder: Path, device: torch.device):
    path = folder / "standin_features.pt"
    torch.jit.save(torch.jit.script(StandInFeatures().eval()), str(path))
    return torch.jit.load(str(path), map_location=device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_evaluation(sizes: Sizes, job: dict, checkpoint: Path | None, device: torch.device) -> list[Row]:
    """Sampling, NLL and FID-path rows for the short-trained digits model."""
    if checkpoint is None or not checkpoint.is_file():
        return [Row("eval", "evaluation of the short-trained model", None, "skip",
                    note="no trained checkpoint (the resume check's uninterrupted run failed)")]
    ecfg = job["evaluate"]
    em = load_eval_model(job, checkpoint, use_ema=True, device=device)
    tol = {"atol": float(ecfg["nfe"]["atol"]), "rtol": float(ecfg["nfe"]["rtol"])}
    rows: list[Row] = []
    shape = load_split(job["paths"]["data_dir"], "test").tensor().shape[1:]
    noise = torch.randn((sizes.n_samples, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    _sync(device)
    t0 = time.perf_counter()
    x, nfe = sample_path(em.v, em.path, noise, method="dopri5", **tol)
    _sync(device)
    dt = time.perf_counter() - t0
    ok = bool(torch.isfinite(x).all()) and 0 < nfe < 2000
    rows.append(judged("eval", "dopri5 NFE (digits U-Net)", nfe, ok, "0 < NFE < 2000, samples finite",
                       f"{sizes.n_samples} samples, atol/rtol {tol['atol']:g}, "
                       f"{em.step} training steps, {sizes.n_samples / dt:.1f} samples/s"))

    test = load_split(job["paths"]["data_dir"], "test", generator=torch.Generator().manual_seed(0))
    x1 = test.tensor()[:sizes.n_nll].to(device)
    logp, nll_nfe = log_prob_path(em.v, em.path, x1, exact=False, hutchinson_samples=1,
                                  generator=torch.Generator(device).manual_seed(0), **tol)
    bpd = float(bits_per_dim(logp, int(np.prod(shape))).mean())
    # the untrained model (v = 0: the ADM U-Net's zero output layer) scores its prior N(0, I) alone
    logp0, _ = log_prob_path(lambda t, x: torch.zeros_like(x), em.path, x1, exact=True, **tol)
    bpd0 = float(bits_per_dim(logp0, int(np.prod(shape))).mean())
    rows.append(judged("eval", "Hutchinson NLL bits/dim (digits test)", bpd, finite(bpd) and bpd < bpd0,
                       f"finite, < untrained (v = 0): {bpd0:.4g}",
                       f"{sizes.n_nll} images, 1 Rademacher probe, NFE {nll_nfe}"))

    with tempfile.TemporaryDirectory(prefix="gpu-check-fid-") as tmp:
        net = _stand_in_network(Path(tmp), device)
        train = load_split(job["paths"]["data_dir"], "train", generator=torch.Generator().manual_seed(1))
        ref = train.tensor()[:sizes.n_reference]
        ref_path = Path(tmp) / stats_filename("digits_standin")
        save_stats(ref_path, image_features(model_to_uint8(ref), net, device))
        t0 = time.perf_counter()
        fd_samples = fid_from_features(image_features(model_to_uint8(x), net, device), ref_path)
        fid_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        noise_img = rng.integers(0, 256, size=(sizes.n_samples, *shape[1:], shape[0]), dtype=np.uint8)
        fd_noise = fid_from_features(image_features(noise_img, net, device), ref_path)
    rows.append(judged("eval", "FD samples vs train, STAND-IN features", fd_samples,
                       finite(fd_samples, fd_noise) and fd_samples < fd_noise,
                       "finite, < FD of uniform noise images",
                       f"clean-fid resizer + TorchScript stand-in on {device.type} (not Inception: not FID); "
                       f"noise images: {fd_noise:.4g}; {sizes.n_samples} images in {fid_s:.1f} s"))
    return rows


def check_sampling_speed(sizes: Sizes, device: torch.device) -> list[Row]:
    """dopri5 samples/s of the CIFAR-10 U-Net at the evaluation batch."""
    params = load_params(REPO / "params" / "paper.yaml")
    cfg = sizes.unet(params["models"]["cifar10"])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():  # zero-initialised layers: v = 0 would take no real steps
                p.normal_(0.0, 0.02)
    model.to(device).eval().requires_grad_(False)
    path = build_path(params["methods"]["fm_ot"])
    tol = params["evaluate"]["cifar10"]["nfe"]
    noise = torch.randn(sizes.sample_batch, cfg["in_channels"], cfg["image_size"], cfg["image_size"],
                        generator=torch.Generator().manual_seed(0)).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    x, nfe = sample_path(velocity_field(model, path, "velocity"), path, noise, method="dopri5",
                         atol=float(tol["atol"]), rtol=float(tol["rtol"]))
    _sync(device)
    dt = time.perf_counter() - t0
    what = (f"{'toy-width' if sizes.cpu else 'paper'} CIFAR-10 U-Net, untrained (stand-in weights), "
            f"batch {len(x)}")
    rows = [judged("sample", "dopri5 samples/s", len(x) / dt, bool(torch.isfinite(x).all()) and nfe > 0,
                   "measured, samples finite",
                   f"{what}; NFE {nfe}, {1e3 * dt / max(nfe, 1):.1f} ms per evaluation, "
                   f"atol/rtol {tol['atol']:g}; the NFE is not a trained model's")]
    if device.type == "cuda":
        rows.append(Row("sample", "peak memory GiB", torch.cuda.max_memory_allocated(device) / 2**30, "info"))
    return rows
