"""Classifier-free guidance as a denoiser, so the one Sampler runs it unchanged (in PyTorch and in the graph)."""

from __future__ import annotations

import torch

from ..denoiser import Denoiser


class GuidedDenoiser(Denoiser):
    """D_u + s (D_c - D_u) with one network call per evaluation: the batch is doubled with the null label.

    `cond` is `(labels [B] int64, scale)`, the scale one per sample [B] (as graphs take it) or one for
    all ([] or a float); the null label is `info.num_classes`, so a null-labelled sample gives the
    unconditional model whatever its scale, and scale 1 gives the plain conditional model.
    """

    def __init__(self, denoiser: Denoiser):
        super().__init__()
        if not denoiser.info.num_classes:
            raise ValueError(f"guidance needs a class-conditional denoiser; {denoiser.info.name!r} has no classes")
        self.denoiser = denoiser
        self.info = denoiser.info

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                cond: tuple[torch.Tensor, torch.Tensor | float]) -> torch.Tensor:
        labels, scale = cond
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(b)
        null = torch.full_like(labels, self.info.num_classes)
        d = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([labels, null]))
        d_cond, d_uncond = d[:b], d[b:]
        scale = torch.as_tensor(scale, dtype=d.dtype, device=d.device)
        if scale.ndim == 1:  # per sample: [B] -> [B, 1, 1, 1]
            scale = scale.reshape(-1, *([1] * (d.ndim - 1)))
        return d_uncond + scale * (d_cond - d_uncond)
