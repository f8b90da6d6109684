"""A k-diffusion-style denoiser around the demo network, for `--model python:examples/kdiffusion_wrapper.py:make`.

`KarrasDenoiser` has the shape of crowsonkb/k-diffusion `k_diffusion/layers.py` `Denoiser`:
D(x, sigma) = c_skip * x + c_out * inner(c_in * x, sigma), with EDM's scalings for `sigma_data`. The
inner network is the demo's raw SongUNet, fed EDM's noise input ln(sigma)/4. The attributes `shape`,
`sigma_min` and `sigma_max` are what a `python:` reference needs (s4s_export/families/pyfactory.py).
"""

from __future__ import annotations

import torch
from torch import nn

from s4s_export.networks.demo import load_demo


class SongUNetSigma(nn.Module):
    """The demo's SongUNet taking sigma (k-diffusion's inner-model input) instead of EDM's c_noise."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.unet(x, sigma.log() / 4, class_labels=None)


class KarrasDenoiser(nn.Module):
    """k-diffusion's `Denoiser`: model(x, sigma[B]) -> x0_hat."""

    def __init__(self, inner: nn.Module, sigma_data: float, sigma_min: float, sigma_max: float,
                 shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.inner, self.sigma_data = inner, sigma_data
        self.sigma_min, self.sigma_max, self.shape = sigma_min, sigma_max, shape

    def get_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c_skip = self.sigma_data**2 / (sigma**2 + self.sigma_data**2)
        c_out = sigma * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        return c_skip, c_out, c_in

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **extra) -> torch.Tensor:
        c_skip, c_out, c_in = (c[:, None, None, None] for c in self.get_scalings(sigma))
        return self.inner(x * c_in, sigma, **extra) * c_out + x * c_skip


def make() -> KarrasDenoiser:
    demo = load_demo()
    info = demo.info
    return KarrasDenoiser(SongUNetSigma(demo.model), demo.sigma_data, info.sigma_min, info.sigma_max, info.shape)
