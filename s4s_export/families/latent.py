"""Latent decoders: what a latent model's samples decode to (diffusers AutoencoderKL and VQModel).

A latent denoiser works on latents z; `LatentDecoder.forward(z)` gives images in [-1, 1]:
  AutoencoderKL: image = vae.decode(z / scaling_factor + shift_factor)   (SD: 0.18215, 0; SD3: 1.5305, 0.0609)
  VQModel:       image = vqvae.decode(z / scaling_factor), quantised to the nearest codebook entry first
The denoiser's ModelInfo records the decoded shape (`decodes_to`); the decoder is its `decoder` submodule.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import S4SError

DECODER_CLASSES = ("AutoencoderKL", "VQModel")


class LatentDecoder(nn.Module):
    """Wraps a diffusers AutoencoderKL or VQModel; `forward(z [B,C,h,w]) -> image [B,3,H,W]`."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        kind = type(vae).__name__
        if kind not in DECODER_CLASSES:
            raise S4SError(f"unsupported latent decoder class {kind}; supported: {', '.join(DECODER_CLASSES)}")
        self.vae = vae
        self.kind = kind
        self.scaling_factor = float(vae.config.get("scaling_factor", 1.0))
        shift = vae.config.get("shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z / self.scaling_factor + self.shift_factor
        if self.kind == "VQModel":
            return self.vae.decode(z, force_not_quantize=False).sample
        return self.vae.decode(z).sample

    def decoded_shape(self, latent_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) of a decoded sample: the VAE upsamples by 2 per extra block."""
        _, h, w = latent_shape
        f = 2 ** (len(self.vae.config["block_out_channels"]) - 1)
        return int(self.vae.config.get("out_channels", 3)), h * f, w * f
