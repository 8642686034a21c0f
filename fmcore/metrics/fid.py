"""FID through clean-fid's parts: clean resizing, Inception-v3 pool features, custom stats.

FID = Frechet distance (:mod:`fmcore.metrics.frechet`) between the Gaussian fits of the
2048-d Inception pool features of generated samples and of the training split:

* images are 8-bit: model outputs in [-1, 1] are mapped back with
  ``floor((x + 1) * 128)`` clipped to [0, 255], the exact inverse of the
  dequantization ``x = 2 (k + u) / 256 - 1`` of the data loader;
* grey images are repeated to 3 channels, then resized to 299 x 299 by clean-fid's
  ``build_resizer("clean")`` (PIL bicubic on float32, no re-quantization);
* features come from clean-fid's ``InceptionV3W`` TorchScript network
  (``inception-2015-12-05.pt``), loaded from a LOCAL file: never downloaded at run time;
* reference statistics (mu, sigma) are stored in clean-fid's custom-statistics naming
  ``<name>_clean_custom_na.npz`` (lower case; keys ``mu``, ``sigma``).

Any ``feature_network`` taking a float tensor [B, 3, 299, 299] in [0, 255] can replace
Inception (tests inject a tiny one; the resize, statistics and distance code is the same).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from cleanfid.resize import build_resizer

from fmcore.io import read_npz
from fmcore.metrics.frechet import frechet_distance, gaussian_stats

__all__ = [
    "INCEPTION_FILENAME",
    "INCEPTION_URL",
    "WEIGHTS_ENV",
    "FeatureNetwork",
    "clean_resize",
    "fid_from_features",
    "image_features",
    "load_inception",
    "load_stats",
    "model_to_uint8",
    "resolve_inception_weights",
    "save_stats",
    "stats_filename",
]

INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
)
INCEPTION_FILENAME = "inception-2015-12-05.pt"
WEIGHTS_ENV = "FMREPRO_INCEPTION_WEIGHTS"

FeatureNetwork = Callable[[torch.Tensor], torch.Tensor]


def resolve_inception_weights(configured: str | None, dataset: str = "<dataset>") -> Path:
    """Path of the Inception TorchScript file: ``$FMREPRO_INCEPTION_WEIGHTS`` if set, else params.

    Args:
        configured: ``evaluate.<dataset>.quality.inception_weights`` from params (or None).
        dataset: dataset name, for the error message.

    Raises:
        ValueError: neither is set or the file does not exist; the one-line message says
            where to get the file and where to put it.
    """
    raw = os.environ.get(WEIGHTS_ENV) or configured
    if raw and Path(raw).is_file():
        return Path(raw)
    where = f"'{raw}' does not exist" if raw else "no weights file configured"
    raise ValueError(
        f"Inception weights for FID: {where}; download {INCEPTION_URL} (clean-fid's "
        f"{INCEPTION_FILENAME}) on a machine with internet, copy it e.g. to data/raw/{INCEPTION_FILENAME}, "
        f"and set evaluate.{dataset}.quality.inception_weights to that path or export {WEIGHTS_ENV}=<path>"
    )


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> FeatureNetwork:
    """Load clean-fid's ``InceptionV3W`` from a local file (no download), in eval mode.

    Raises:
        ValueError: the file is not named ``inception-2015-12-05.pt`` or cannot be loaded.
    """
    from cleanfid.inception_torchscript import InceptionV3W

    path = Path(path)
    if path.name != INCEPTION_FILENAME:
        raise ValueError(f"{path}: clean-fid expects the weights file to be named {INCEPTION_FILENAME}")
    try:
        net = InceptionV3W(str(path.parent), download=False, resize_inside=False)
    except (RuntimeError, OSError) as exc:
        raise ValueError(f"{path}: cannot load Inception TorchScript ({type(exc).__name__})") from None
    return net.to(device).eval()


def model_to_uint8(x: torch.Tensor) -> np.ndarray:
    """Map images in the model's range [-1, 1], shape [B, C, H, W], to uint8 [B, H, W, C]."""
    if x.ndim != 4:
        raise ValueError(f"images: expected shape [B, C, H, W], got {tuple(x.shape)}")
    k = torch.floor((x.detach().to(torch.float64).cpu() + 1.0) * 128.0).clamp(0, 255)
    return k.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def clean_resize(images: np.ndarray) -> torch.Tensor:
    """clean-fid "clean" resize of uint8 images [B, H, W, C] (C = 1 or 3) to [B, 3, 299, 299]."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [B, H, W, 1|3], got {images.dtype} {images.shape}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    resize = build_resizer("clean")
    out = np.stack([resize(img.astype(np.float32)) for img in images])
    return torch.from_numpy(out.transpose(0, 3, 1, 2).copy())


@torch.no_grad()
def image_features(
    images: np.ndarray, network: FeatureNetwork, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Features of uint8 images [B, H, W, C]: clean resize, then ``network``; float64 [B, D]."""
    feats = network(clean_resize(images).to(device))
    return feats.reshape(feats.shape[0], -1).double().cpu().numpy()


def stats_filename(name: str, mode: str = "clean", model_name: str = "inception_v3") -> str:
    """clean-fid's custom statistics file name ``<name>_<mode>[_<model>]_custom_na.npz``, lower case."""
    modifier = "" if model_name == "inception_v3" else f"_{model_name}"
    return f"{name}_{mode}{modifier}_custom_na.npz".lower()


def save_stats(path: str | Path, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit (mu, sigma) to ``features`` [N, D] and save them atomically as npz (``mu``, ``sigma``)."""
    from fmcore.io import atomic_savez

    mu, sigma = gaussian_stats(features)
    atomic_savez(path, mu=mu, sigma=sigma)
    return mu, sigma


def load_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read (mu, sigma) saved by :func:`save_stats` or clean-fid.

    Raises:
        ValueError: the file is missing (run ``python -m fmcore.evaluate reference``) or lacks keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"{path}: reference statistics missing; run `python -m fmcore.evaluate reference` first"
        )
    stats = read_npz(path)
    if "mu" not in stats or "sigma" not in stats:
        raise ValueError(f"{path}: expected keys mu, sigma; found {', '.join(stats) or 'none'}")
    return stats["mu"], stats["sigma"]


def fid_from_features(features: np.ndarray, reference: str | Path) -> float:
    """Frechet distance between the Gaussian fit of ``features`` and the stored reference stats."""
    mu, sigma = gaussian_stats(features)
    mu_ref, sigma_ref = load_stats(reference)
    return frechet_distance(mu, sigma, mu_ref, sigma_ref)
