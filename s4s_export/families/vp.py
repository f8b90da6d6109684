"""Discrete-time VP models (DDPM/DDIM/PNDM/Euler scheduler configs) as EDM denoisers.

Schedule (diffusers' schedulers): betas from the config -> alpha_bar = cumprod(1 - beta) ->
sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), t = 0..T-1. The VE state is x = x_t / sqrt(alpha_bar)
= x0 + sigma eps, so the network input is x_t = x / sqrt(1 + sigma^2) (model space "vp").
A continuous sigma maps to a fractional timestep by linear interpolation in log sigma (k-diffusion's
DiscreteSchedule.sigma_to_t, docs/models.md). With a = 1/sqrt(1 + sigma^2), s = sigma * a:
  epsilon:      D = (x_t - s eps) / a
  v_prediction: D = a x_t - s v            (x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v)
  sample:       D = x0_hat
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..denoiser import Denoiser, ModelInfo, sigma_batch
from ..errors import S4SError, choice_error
from .guidance import guided

PREDICTIONS = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _cosine_betas(n: int, max_beta: float = 0.999) -> torch.Tensor:
    """diffusers' betas_for_alpha_bar (Glide cosine schedule)."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)],
                        dtype=torch.float32)


def betas_from_config(config: dict) -> torch.Tensor:
    """Betas exactly as diffusers' DDPM/DDIM/PNDM/Euler/DPM-Solver schedulers compute them (float32)."""
    n = int(config.get("num_train_timesteps", 1000))
    if config.get("rescale_betas_zero_snr"):
        raise S4SError("scheduler config sets rescale_betas_zero_snr: the last timestep has sigma = inf, which a VP "
                       "model cannot be sampled from here; use a config without it")
    trained = config.get("trained_betas")
    if trained is not None:
        return torch.tensor(trained, dtype=torch.float32)
    kind = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if kind == "linear":
        return torch.linspace(start, end, n, dtype=torch.float32)
    if kind == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float32) ** 2
    if kind == "squaredcos_cap_v2":
        return _cosine_betas(n)
    raise choice_error("beta_schedule", kind, [*BETA_SCHEDULES, "trained_betas"])


@dataclass(frozen=True, eq=False)
class VPSchedule:
    """A discrete VP schedule: sigmas[t] for integer timesteps t = 0..T-1 (float64, increasing)."""

    sigmas: np.ndarray

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: np.ndarray | torch.Tensor) -> VPSchedule:
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        sig = (((1 - ac) / ac) ** 0.5).double().numpy()  # float32 math, as diffusers' schedulers do
        if sig.ndim != 1 or sig.size < 2 or not np.all(np.isfinite(sig)) or np.any(np.diff(sig) <= 0) or sig[0] <= 0:
            raise S4SError("alphas_cumprod must give finite, positive, strictly increasing sigmas over timesteps")
        return cls(sig)

    @classmethod
    def from_config(cls, config: dict) -> VPSchedule:
        """From a diffusers scheduler config (beta_schedule, beta_start, beta_end, num_train_timesteps,
        trained_betas)."""
        return cls.from_alphas_cumprod(torch.cumprod(1.0 - betas_from_config(config), dim=0))

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return 1.0 / (1.0 + self.sigmas**2)

    def sigma_to_t(self, sigma: np.ndarray | float) -> np.ndarray:
        """Fractional timestep: linear in log sigma between neighbouring timesteps, clamped to [0, T-1]."""
        return np.interp(np.log(np.asarray(sigma, dtype=np.float64)), np.log(self.sigmas),
                         np.arange(self.sigmas.size, dtype=np.float64))

    def t_to_sigma(self, t: np.ndarray | float) -> np.ndarray:
        """Inverse of `sigma_to_t`: log sigma interpolated linearly in t."""
        return np.exp(np.interp(np.asarray(t, dtype=np.float64), np.arange(self.sigmas.size), np.log(self.sigmas)))


class SigmaToTimestep(nn.Module):
    """Torch form of `VPSchedule.sigma_to_t` (k-diffusion's DiscreteSchedule.sigma_to_t): traceable, any dtype."""

    def __init__(self, schedule: VPSchedule):
        super().__init__()
        self.register_buffer("log_sigmas", torch.tensor(np.log(schedule.sigmas), dtype=torch.float32), persistent=False)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigmas = self.log_sigmas.to(sigma.dtype)
        log_sigma = sigma.log()
        dists = log_sigma - log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
        lo, hi = log_sigmas[low], log_sigmas[low + 1]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return (1 - w) * low.to(sigma.dtype) + w * (low + 1).to(sigma.dtype)




class VPDenoiser(Denoiser):
    """A discrete-time VP network as D(x, sigma, cond); `net(x_t, t, cond) -> eps | v | x0` in model space "vp".

    `guidance_scale` s != 1 runs the conditional and unconditional inputs in one batched call and
    combines the raw outputs as out_u + s (out_c - out_u) (families/guidance.py) before converting to D.
    """

    def __init__(self, net: nn.Module, schedule: VPSchedule, prediction: str, info: ModelInfo,
                 guidance_scale: float = 1.0):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise choice_error("prediction_type", prediction, list(PREDICTIONS))
        if info.space != "vp":
            raise S4SError(f"a VP denoiser needs ModelInfo.space='vp', got {info.space!r}")
        self.net = net
        self.schedule = schedule
        self.sigma_to_t = SigmaToTimestep(schedule)
        self.prediction = prediction
        self.guidance_scale = float(guidance_scale)
        self.info = info

    def forward_scaled(self, x_in: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        s = sigma_batch(sigma, x_in)
        a = (1 + s * s).rsqrt()
        t = self.sigma_to_t(s.reshape(-1))
        out = guided(self.net, x_in, t, cond, self.guidance_scale, self.info.num_classes).to(x_in.dtype)
        if self.prediction == "epsilon":
            return (x_in - (s * a) * out) / a
        if self.prediction == "v_prediction":
            return a * x_in - (s * a) * out
        return out

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self.forward_scaled(x * (1 + sigma_batch(sigma, x) ** 2).rsqrt(), sigma, cond)
