"""The held-out set solvers are measured on: fixed noise, labels, and the teacher's outputs for them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .conditioning import condition_labels
from .denoiser import Denoiser
from .noise import VALIDATION_SEED, noise_set
from .sampler import Sampler
from .solvers import SolverTable
from .teacher import TeacherSpec, run_teacher


@dataclass
class HeldOut:
    """Held-out noise, labels and the teacher's outputs for them."""

    noise: torch.Tensor
    labels: torch.Tensor | None
    target: torch.Tensor
    teacher: TeacherSpec
    exact: bool

    decoded_target: torch.Tensor | None = None  # latent models: the target decoded to images

    @property
    def dtype(self) -> torch.dtype:
        """float64 against an exact reference, else float32."""
        return torch.float64 if self.exact else torch.float32


def held_out_set(denoiser: Denoiser, teacher: TeacherSpec, samples: int, batch: int = 64) -> HeldOut:
    info = denoiser.info
    noise = noise_set(info.shape, samples, VALIDATION_SEED)
    labels = condition_labels(denoiser, samples, VALIDATION_SEED, held_out=True)
    target = run_teacher(denoiser, teacher, noise, labels, batch, desc="held-out targets")
    return HeldOut(noise, labels, target, teacher, teacher.is_reference, decode(denoiser, target, batch))


@torch.no_grad()
def decode(denoiser: Denoiser, latents: torch.Tensor, batch: int = 64) -> torch.Tensor | None:
    """Images in [-1, 1] from a latent model's samples (its `decoder`, families/latent.py); None for pixel models."""
    decoder = getattr(denoiser, "decoder", None)
    if decoder is None:
        return None
    return torch.cat([decoder(latents[i : i + batch].float()).float() for i in range(0, latents.shape[0], batch)])


@torch.no_grad()
def run_solver(denoiser: Denoiser, solver: SolverTable, noise: torch.Tensor, labels: torch.Tensor | None,
               dtype: torch.dtype = torch.float32, batch: int = 64) -> torch.Tensor:
    """Sample with a solver table in batches (float64 for exact-model checks)."""
    sampler = Sampler(denoiser, solver).to(dtype)
    outs = []
    for i in range(0, noise.shape[0], batch):
        c = None if labels is None else labels[i : i + batch]
        outs.append(sampler(noise[i : i + batch].to(dtype), c))
    return torch.cat(outs)
