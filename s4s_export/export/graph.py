"""The exportable module: noise (+ labels, guidance scale) -> images, around the one Sampler."""

from __future__ import annotations

import torch
from torch import nn

from ..denoiser import Denoiser
from ..errors import choice_error
from ..sampler import FixedSolver, Sampler
from ..solvers import SolverTable
from .guidance import GuidedDenoiser
from .precision import with_precision

OUTPUTS = ("float", "uint8")


def to_images(x: torch.Tensor, output: str) -> torch.Tensor:
    """float: NCHW clamped to [-1, 1]; uint8: NHWC floor(127.5 x + 128) of the clamped x (EDM's conversion).

    floor(127.5 x + 128) is 127.5 (x + 1) rounded half up, so -1 -> 0 and 1 -> 255; the explicit
    floor keeps the integer cast exact in every runtime. The cast is the graph's last node: TensorRT
    allows UINT8 only at network inputs and outputs, so the transpose runs on floats.
    """
    x = x.clamp(-1, 1)
    if output == "float":
        return x
    if output == "uint8":
        return (x * 127.5 + 128).floor().permute(0, 2, 3, 1).to(torch.uint8)
    raise choice_error("output", output, OUTPUTS)


class SamplerGraph(nn.Module):
    """`forward(noise [B,C,H,W] float32[, class_labels [B] int64, guidance_scale [B] float32]) -> images`.

    The sampler runs in float32 (solver constants as float32 buffers); with a `GuidedDenoiser`
    the labels and per-sample scales travel to it as the sampler's `cond`.
    """

    def __init__(self, sampler: Sampler, output: str = "float"):
        super().__init__()
        if output not in OUTPUTS:
            raise choice_error("output", output, OUTPUTS)
        self.sampler = sampler
        self.output = output

    @property
    def guided(self) -> bool:
        return isinstance(self.sampler.denoiser, GuidedDenoiser)

    def forward(self, noise: torch.Tensor, class_labels: torch.Tensor | None = None,
                guidance_scale: torch.Tensor | None = None) -> torch.Tensor:
        cond = (class_labels, guidance_scale) if self.guided else None
        return to_images(self.sampler(noise, cond), self.output)


def sampler_graph(denoiser: Denoiser, solver: SolverTable, precision: str = "fp32",
                  output: str = "float") -> SamplerGraph:
    """The module to trace: precision applied, guidance for class-conditional models, float32 solver constants."""
    net = with_precision(denoiser, precision)
    if denoiser.info.num_classes:
        net = GuidedDenoiser(net)
    return SamplerGraph(Sampler(net, FixedSolver(solver, torch.float32)), output).eval().requires_grad_(False)
