"""CPU stand-in for FID on the digits data: ``fd_digits`` (never called ``fid``).

A small CNN classifier is trained on the digits training split; the Frechet distance
(:mod:`fmcore.metrics.frechet`) between the Gaussian fits of its penultimate-layer
features (64-d) on generated samples and on the training split is reported as
``fd_digits``. It plays Inception's role at 8 x 8 resolution, so its values are not
comparable with any published FID. The classifier's test accuracy is reported with it
(a feature space that cannot tell digits apart would make the distance meaningless).

Images enter as uint8 [B, H, W, 1] (see :func:`fmcore.metrics.fid.model_to_uint8`) and
are scaled to bin centres in [-1, 1], ``x = (k + 1/2) / 128 - 1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

__all__ = [
    "CKPT_FORMAT",
    "DigitsCNN",
    "accuracy",
    "digits_features",
    "load_classifier",
    "save_classifier",
    "train_classifier",
    "uint8_to_input",
]

CKPT_FORMAT = "fmrepro-digits-cnn-v1"


class DigitsCNN(nn.Module):
    """conv3x3(16) - ReLU - conv3x3(32) - ReLU - maxpool2 - linear(feature_dim) - ReLU - linear(10).

    Args:
        image_size: side of the square grey input (8 for scikit-learn digits).
        feature_dim: width of the penultimate layer whose activations are the features.
        num_classes: number of labels.
    """

    def __init__(self, image_size: int = 8, feature_dim: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        if image_size % 2:
            raise ValueError(f"image_size: expected an even size, got {image_size}")
        self.config = {"image_size": image_size, "feature_dim": feature_dim, "num_classes": num_classes}
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * (image_size // 2) ** 2, feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, [B, 1, H, W] -> [B, feature_dim]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, [B, 1, H, W] -> [B, num_classes]."""
        return self.head(self.body(x))


def uint8_to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 1] or [B, 1, H, W] -> float32 [B, 1, H, W] at bin centres in [-1, 1]."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images: expected uint8 with 4 dims, got {images.dtype} {images.shape}")
    if images.shape[-1] == 1 and images.shape[1] != 1:
        images = images.transpose(0, 3, 1, 2)
    return torch.from_numpy((images.astype(np.float32) + 0.5) / 128.0 - 1.0)


def train_classifier(
    images: np.ndarray, labels: np.ndarray, steps: int, batch_size: int = 128, lr: float = 1e-3, seed: int = 0
) -> DigitsCNN:
    """Train :class:`DigitsCNN` with Adam on uint8 images [N, 1, H, W] and int labels [N]."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"classifier data: {len(images)} images vs {len(labels)} labels")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = uint8_to_input(images), torch.as_tensor(labels, dtype=torch.long)
    model = DigitsCNN(image_size=x.shape[-1], num_classes=int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(steps), desc="digits classifier", leave=False):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: DigitsCNN, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of uint8 images [N, 1, H, W] classified as their label."""
    pred = model(uint8_to_input(images)).argmax(dim=1).numpy()
    return float((pred == np.asarray(labels)).mean())


@torch.no_grad()
def digits_features(model: DigitsCNN, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Penultimate features, float64 [N, feature_dim], of uint8 images [N, H, W, 1] or [N, 1, H, W]."""
    x = uint8_to_input(images)
    out = [model.features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy()


def save_classifier(path: str | Path, model: DigitsCNN, test_accuracy: float, steps: int) -> None:
    """Atomically save a plain-container checkpoint (loadable with ``weights_only=True``)."""
    import io

    from fmcore.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(
        {"format": CKPT_FORMAT, "config": dict(model.config), "state_dict": model.state_dict(),
         "test_accuracy": float(test_accuracy), "steps": int(steps)},
        buf,
    )  # fmt: skip
    atomic_write_bytes(path, buf.getvalue())


def load_classifier(path: str | Path) -> tuple[DigitsCNN, float]:
    """Load (model, test_accuracy) with ``weights_only=True``.

    Raises:
        ValueError: missing file (run ``python -m fmcore.evaluate reference``) or wrong format.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"{path}: digits classifier missing; run `python -m fmcore.evaluate reference` first"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise ValueError(f"{path}: cannot load classifier checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not a {CKPT_FORMAT} checkpoint")
    model = DigitsCNN(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), float(ckpt["test_accuracy"])
