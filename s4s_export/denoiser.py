"""The denoiser protocol every model speaks: EDM's D(x, sigma, cond) -> x0_hat."""

from __future__ import annotations

import abc
import hashlib
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

Conditioning = Literal["none", "class", "text"]


@dataclass(frozen=True)
class ModelInfo:
    """What later stages need to know about a denoiser."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W) of one sample
    sigma_min: float
    sigma_max: float
    conditioning: Conditioning = "none"
    num_classes: int = 0  # for class conditioning; label `num_classes` is the null (unconditional) label
    sigma_data: float = 0.5
    description: str = ""
    # Added fields: left out of `to_dict()` at their defaults, so existing models keep their records.
    space: str = "ve"  # the model's input scaling (s4s_export/schedules.py SPACES; docs/solvers.md)
    decodes_to: tuple[int, int, int] | None = None  # latent models: (C, H, W) of a decoded sample

    @property
    def latent(self) -> bool:
        return self.decodes_to is not None

    @property
    def dim(self) -> int:
        c, h, w = self.shape
        return c * h * w

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        for key, default in _ADDED_DEFAULTS.items():
            if d[key] == default:
                del d[key]
        if d.get("decodes_to") is not None:
            d["decodes_to"] = list(d["decodes_to"])
        return d


_ADDED_DEFAULTS = {"space": "ve", "decodes_to": None}


class Denoiser(nn.Module, abc.ABC):
    """Base class: `forward(x [B,C,H,W], sigma [B] or scalar, cond=None) -> x0_hat [B,C,H,W]`.

    x = x0 + sigma * eps (EDM convention). For class-conditional models `cond` holds int64
    labels [B]; the label `info.num_classes` (and `cond=None`) means unconditional.
    Subclasses set `self.info` and implement `forward`.
    """

    info: ModelInfo

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Return the denoised estimate of x0 in x's dtype."""

    def forward_scaled(self, x_in: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        """D from the input in the model's own space, x_in = c(sigma) * x (`info.space`; VE models: x_in = x).

        Solver tables in that space call this (docs/solvers.md): for flow models it stays finite at sigma = inf.
        """
        if self.info.space != "ve":
            raise NotImplementedError(f"{type(self).__name__} must implement forward_scaled for space "
                                      f"{self.info.space!r}")
        return self(x_in, sigma, cond)

    def identity(self) -> str:
        """sha256 over the state dict (names, dtypes, shapes, bytes): a stable model identity."""
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
        return h.hexdigest()

    def identity_dict(self) -> dict:
        """Model identity as recorded in solver files and exported graphs."""
        return {"name": self.info.name, "weights_sha256": self.identity(), "shape": list(self.info.shape)}


def sigma_batch(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or [B] sigma to shape [B, 1, 1, 1] in x's dtype."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return s.reshape(-1, *([1] * (x.ndim - 1))).expand(x.shape[0], *([1] * (x.ndim - 1)))
