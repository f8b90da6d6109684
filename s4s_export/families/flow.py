"""Flow-matching / rectified-flow models (SD3, Flux-style FlowMatchEulerDiscreteScheduler) as EDM denoisers.

x_t = (1 - t) x0 + t eps, so x_t / (1 - t) = x0 + sigma eps with sigma = t / (1 - t): the model
space is "flow" (x_in = x / (1 + sigma), t = sigma / (1 + sigma)). The network predicts the velocity
v = eps - x0 at timestep t * num_train_timesteps, and D = x_t - t v. At t = 1 (sigma = inf) the
input is pure noise and everything stays finite. The scheduler's shift s maps t to s t / (1 + (s - 1) t).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..denoiser import Denoiser, ModelInfo, sigma_batch
from ..errors import S4SError
from .guidance import guided


def shift_t(t: np.ndarray | float, shift: float) -> np.ndarray:
    """FlowMatchEulerDiscreteScheduler's static shift of t in [0, 1]."""
    t = np.asarray(t, dtype=np.float64)
    return shift * t / (1 + (shift - 1) * t)


def t_to_sigma(t: np.ndarray | float) -> np.ndarray:
    """sigma = t / (1 - t) (inf at t = 1)."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(t >= 1, np.inf, t / np.maximum(1 - t, 0))


def flow_sigma_range(config: dict) -> tuple[float, float]:
    """(sigma_min, sigma_max) of a FlowMatchEulerDiscreteScheduler config: its smallest training t, and t = 1."""
    n = int(config.get("num_train_timesteps", 1000))
    shift = 1.0 if config.get("use_dynamic_shifting") else float(config.get("shift", 1.0))
    return float(t_to_sigma(shift_t(1.0 / n, shift))), float("inf")


class FlowDenoiser(Denoiser):
    """A velocity network `net(x_t, timestep, cond) -> v` as D(x, sigma, cond) in model space "flow"."""

    def __init__(self, net: nn.Module, info: ModelInfo, num_train_timesteps: int = 1000, guidance_scale: float = 1.0):
        super().__init__()
        if info.space != "flow":
            raise S4SError(f"a flow denoiser needs ModelInfo.space='flow', got {info.space!r}")
        self.net = net
        self.num_train_timesteps = int(num_train_timesteps)
        self.guidance_scale = float(guidance_scale)
        self.info = info

    def forward_scaled(self, x_in: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        s = sigma_batch(sigma, x_in)
        t = 1 - 1 / (1 + s)  # 1 at sigma = inf
        v = guided(self.net, x_in, t.reshape(-1) * self.num_train_timesteps, cond, self.guidance_scale,
                   self.info.num_classes)
        return x_in - t * v.to(x_in.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self.forward_scaled(x / (1 + sigma_batch(sigma, x)), sigma, cond)
