"""`fd-digits`: sample quality of the demo model against its data, the role FID plays for CIFAR-10.

The Fréchet distance (FID's formula, scipy's matrix square root) between the penultimate-layer
features of a small digits classifier for the samples and for the whole sklearn digits set in the
demo model's data space (`digits_16x16`: 16x16, nearest-neighbour upsampling and a [1,2,1] blur,
[-1, 1]; docs/demo.md). The classifier is trained by scripts/train_digits_classifier.py; its
weights ship in assets/digits_classifier.safetensors with the held-out accuracy in their metadata.
The reference statistics are computed at run time from sklearn's bundled data (offline).
Like FID, the value from a few hundred samples is biased upwards: compare it at equal sample counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import S4SError

CLASSIFIER_ASSET = Path(__file__).parent / "assets" / "digits_classifier.safetensors"
DIGITS_SHAPE = (1, 16, 16)
SPLIT_SEED = 0  # the classifier's train / held-out split (scripts/train_digits_classifier.py)
HELD_OUT_FRACTION = 0.2
FEATURE_BATCH = 256


def sklearn_available() -> bool:
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False
    return True


def digits_16x16() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's digits in the demo model's data space: images float32 [1797, 1, 16, 16] in [-1, 1], labels [1797]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, scale_factor=2, mode="nearest")
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.outer(k, k)[None, None])
    return x.clamp(0, 1) * 2 - 1, torch.as_tensor(digits.target, dtype=torch.long)


def held_out_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) of the classifier's split: a seeded permutation, the last 20% held out."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = n - round(n * HELD_OUT_FRACTION)
    return np.sort(perm[:cut]), np.sort(perm[cut:])


class DigitsClassifier(nn.Module):
    """Three conv layers and a linear head on [B, 1, 16, 16] in [-1, 1]; `features` is the 64-d penultimate layer."""

    FEATURES = 64

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, self.FEATURES, 3, padding=1)
        self.head = nn.Linear(self.FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 8x8
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 4x4
        return F.relu(self.conv3(x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_classifier(path: Path = CLASSIFIER_ASSET) -> tuple[DigitsClassifier, dict]:
    """The shipped classifier in eval mode, and its training record (held-out accuracy, recipe)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise S4SError(f"digits classifier weights not found at {path}; run scripts/train_digits_classifier.py")
    with safe_open(str(path), "pt") as f:
        record = json.loads((f.metadata() or {}).get("training", "{}"))
    net = DigitsClassifier()
    net.load_state_dict(load_file(str(path)))
    return net.eval().requires_grad_(False), record


@torch.no_grad()
def classifier_features(net: DigitsClassifier, images: torch.Tensor) -> np.ndarray:
    """Penultimate features [N, 64] (float64) of images [N, 1, 16, 16], clamped to [-1, 1] as pixels are."""
    feats = [net.features(images[i : i + FEATURE_BATCH].float().cpu().clamp(-1, 1))
             for i in range(0, images.shape[0], FEATURE_BATCH)]
    return torch.cat(feats).double().numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), as FID computes it (pytorch-fid / clean-fid):
    scipy's sqrtm; on a singular product an eps offset on both diagonals; the real part."""
    import warnings

    from scipy import linalg

    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product (e.g. a feature constant over a set) is handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(0), np.cov(feats, rowvar=False)


class FdDigits:
    """Callable: samples [N, 1, 16, 16] in [-1, 1] -> Fréchet distance to the whole digits set (N >= 2)."""

    def __init__(self, net: DigitsClassifier, record: dict):
        self.net, self.record = net, record
        self.mu, self.sigma = feature_stats(classifier_features(net, digits_16x16()[0]))

    @classmethod
    def from_shipped(cls) -> FdDigits:
        return cls(*load_classifier())

    def __call__(self, images: torch.Tensor) -> float:
        if tuple(images.shape[1:]) != DIGITS_SHAPE or images.shape[0] < 2:
            raise S4SError(f"fd-digits needs at least 2 samples of shape {DIGITS_SHAPE}, got {tuple(images.shape)}")
        return frechet_distance(*feature_stats(classifier_features(self.net, images)), self.mu, self.sigma)
