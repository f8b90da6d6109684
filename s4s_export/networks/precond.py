"""EDM preconditioning wrappers (docs/models.md) as `Denoiser`s.

D(x, sigma) = c_skip * x + c_out * F(c_in * x, c_noise, labels). The wrapped network is the
attribute `model`, so state-dict keys read `model.enc....` exactly as in EDM's pickles.
Preconditioning, inputs and outputs are float32; with use_fp16 the inner network runs in
float16 on CUDA devices (EDM's rule; on CPU it stays float32).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
from torch import nn

from ..denoiser import Denoiser, ModelInfo, sigma_batch
from ..errors import S4SError, choice_error
from .dhariwal import DhariwalUNet
from .songunet import SongUNet

MODEL_TYPES: dict[str, type[nn.Module]] = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}

# EDM's sampler defaults; ModelInfo's range is this range clipped to what the network supports.
DEFAULT_SIGMA_MIN = 0.002
DEFAULT_SIGMA_MAX = 80.0

Coefficients = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def one_hot_labels(cond: torch.Tensor | None, label_dim: int, x: torch.Tensor) -> torch.Tensor | None:
    """Protocol labels -> EDM's float one-hot [B or 1, label_dim] (None when the net has no labels).

    int64 labels [B]: label `label_dim` (the null label) and cond=None give all-zero rows, which is
    EDM's unconditional input. A float tensor [B, label_dim] is taken as a one-hot (or soft) label.
    """
    if not label_dim:
        return None
    if cond is None:
        return torch.zeros(1, label_dim, dtype=torch.float32, device=x.device)
    if cond.is_floating_point():
        return cond.to(torch.float32).reshape(-1, label_dim)
    classes = torch.arange(label_dim, device=cond.device, dtype=cond.dtype)
    return (cond.reshape(-1, 1) == classes).to(torch.float32)


class _Precond(Denoiser):
    """Shared body: label handling, dtype policy and the c_skip/c_out/c_in/c_noise combination."""

    out_factor = 1  # network output channels = out_factor * img_channels

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int, use_fp16: bool, model_type: str,
                 model_kwargs: dict, sigma_min: float, sigma_max: float, sigma_data: float, name: str | None) -> None:
        super().__init__()
        if model_type not in MODEL_TYPES:
            raise choice_error("model_type", model_type, tuple(MODEL_TYPES))
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.use_fp16 = use_fp16
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = float(sigma_data)
        self.model = MODEL_TYPES[model_type](img_resolution=img_resolution, in_channels=img_channels,
                                             out_channels=img_channels * self.out_factor, label_dim=label_dim,
                                             **model_kwargs)
        self.info = ModelInfo(
            name=name or f"{type(self).__name__}-{model_type}",
            shape=(img_channels, img_resolution, img_resolution),
            sigma_min=max(DEFAULT_SIGMA_MIN, self.sigma_min),
            sigma_max=min(DEFAULT_SIGMA_MAX, self.sigma_max),
            conditioning="class" if label_dim else "none",
            num_classes=label_dim,
            sigma_data=self.sigma_data,
            description=f"{type(self).__name__} over {model_type}",
        )

    @abc.abstractmethod
    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        """(c_skip, c_out, c_in, c_noise) for float32 sigma [B, 1, 1, 1]."""

    def round_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Nearest sigma the network supports (identity for continuous-time models)."""
        return torch.as_tensor(sigma)

    def network_dtype(self, x: torch.Tensor, force_fp32: bool = False) -> torch.dtype:
        """float16 only for use_fp16 on CUDA, as EDM."""
        return torch.float16 if self.use_fp16 and not force_fp32 and x.device.type == "cuda" else torch.float32

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None,
                force_fp32: bool = False, augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        x32 = x.to(torch.float32)
        s = sigma_batch(sigma, x32)
        labels = one_hot_labels(cond, self.label_dim, x32)
        dtype = self.network_dtype(x32, force_fp32)
        c_skip, c_out, c_in, c_noise = self.coefficients(s)
        kwargs = {} if augment_labels is None else {"augment_labels": augment_labels.to(dtype)}
        f_x = self.model((c_in * x32).to(dtype), c_noise.flatten(), class_labels=labels, **kwargs)
        d_x = c_skip * x32 + c_out * f_x[:, : self.img_channels].to(torch.float32)
        return d_x.to(x.dtype)


class EDMPrecond(_Precond):
    """EDM (Karras et al. 2022): c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4."""

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float = 0.0, sigma_max: float = math.inf, sigma_data: float = 0.5,
                 model_type: str = "DhariwalUNet", *, name: str | None = None, **model_kwargs) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs,
                         sigma_min, sigma_max, sigma_data, name)

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise


def vp_sigma(t: float, beta_d: float, beta_min: float) -> float:
    """VP schedule sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)."""
    return math.sqrt(math.expm1(0.5 * beta_d * t**2 + beta_min * t))


class VPPrecond(_Precond):
    """Variance preserving (DDPM++ baseline): c_out = -s, c_noise = (M-1) t(s)."""

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000, epsilon_t: float = 1e-5,
                 model_type: str = "SongUNet", *, name: str | None = None, **model_kwargs) -> None:
        sigma_min, sigma_max = vp_sigma(epsilon_t, beta_d, beta_min), vp_sigma(1.0, beta_d, beta_min)
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs,
                         sigma_min, sigma_max, 0.5, name)
        self.beta_d, self.beta_min, self.M, self.epsilon_t = float(beta_d), float(beta_min), int(M), float(epsilon_t)

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """sigma(t) of this VP schedule."""
        t = torch.as_tensor(t)
        return ((0.5 * self.beta_d * t**2 + self.beta_min * t).exp() - 1).sqrt()

    def sigma_inv(self, sigma: torch.Tensor) -> torch.Tensor:
        """t(sigma), the inverse of `sigma`."""
        return ((self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt() - self.beta_min) / self.beta_d

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        return torch.ones_like(sigma), -sigma, 1 / (sigma**2 + 1).sqrt(), (self.M - 1) * self.sigma_inv(sigma)


class VEPrecond(_Precond):
    """Variance exploding (NCSN++ baseline): c_out = s, c_in = 1, c_noise = ln(s/2)."""

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float = 0.02, sigma_max: float = 100.0, model_type: str = "SongUNet", *,
                 name: str | None = None, **model_kwargs) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs,
                         sigma_min, sigma_max, 0.5, name)

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        return torch.ones_like(sigma), sigma, torch.ones_like(sigma), (0.5 * sigma).log()


MAX_GRID_STEPS = 10_000  # iDDPM's M (EDM uses 1000): the grid is a Python loop of M steps (~1 s at the limit)


def _iddpm_grid(C_1: float, C_2: float, M: int) -> torch.Tensor:
    """Improved-DDPM sigma grid u_0 > ... > u_M = 0, computed on the CPU with EDM's float32 ops exactly."""
    if not 1 <= M <= MAX_GRID_STEPS:
        raise S4SError(f"iDDPMPrecond M={M} is out of range; use 1..{MAX_GRID_STEPS} (EDM uses 1000)")

    def alpha_bar(j: int) -> torch.Tensor:
        return (0.5 * math.pi * torch.tensor(j, device="cpu") / M / (C_2 + 1)).sin() ** 2

    u = torch.zeros(M + 1, device="cpu")  # float32, like EDM; explicit CPU so meta builds work too
    for j in range(M, 0, -1):
        u[j - 1] = ((u[j] ** 2 + 1) / (alpha_bar(j - 1) / alpha_bar(j)).clip(min=C_1) - 1).sqrt()
    return u


class iDDPMPrecond(_Precond):  # noqa: N801 (EDM's class name)
    """Improved DDPM (ADM baseline): discrete sigma grid `u`, c_noise = M-1-index of nearest grid sigma."""

    out_factor = 2  # the network also predicts variances; only the first img_channels are used

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 C_1: float = 0.001, C_2: float = 0.008, M: int = 1000, model_type: str = "DhariwalUNet", *,
                 name: str | None = None, **model_kwargs) -> None:
        u = _iddpm_grid(float(C_1), float(C_2), int(M))
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs,
                         float(u[M - 1]), float(u[0]), 0.5, name)
        self.C_1, self.C_2, self.M = float(C_1), float(C_2), int(M)
        self.register_buffer("u", u.to(torch.get_default_device()))  # meta inside `with torch.device("meta")`

    def sigma_index(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index of the nearest grid sigma, same shape as sigma."""
        s = sigma.to(torch.float32).reshape(-1, 1)
        return (s - self.u.reshape(1, -1)).abs().argmin(dim=1).reshape(sigma.shape)

    def round_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        s = torch.as_tensor(sigma, device=self.u.device)
        return self.u[self.sigma_index(s).flatten()].reshape(s.shape).to(s.dtype)

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        c_noise = self.M - 1 - self.sigma_index(sigma).to(torch.float32)
        return torch.ones_like(sigma), -sigma, 1 / (sigma**2 + 1).sqrt(), c_noise


PRECOND_TYPES: dict[str, Callable[..., _Precond]] = {
    "EDMPrecond": EDMPrecond, "VPPrecond": VPPrecond, "VEPrecond": VEPrecond, "iDDPMPrecond": iDDPMPrecond,
}
