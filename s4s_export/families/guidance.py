"""Conditioning inputs of diffusers networks and classifier-free guidance inside the denoiser call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class TextCond:
    """Prompt conditioning: embeddings [B, L, D]; for guidance the unconditional (negative) ones, same shape.

    `pooled` [B, P] and `time_ids` [B, 6] are SDXL's added conditions (UNet `added_cond_kwargs`);
    SD3/Flux-style transformers take `pooled` as `pooled_projections`.
    """

    embeds: torch.Tensor
    negative: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    negative_pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def with_uncond(self) -> TextCond:
        """Batch 2B: unconditional first, then conditional (diffusers' order)."""
        if self.negative is None:
            raise ValueError("guidance needs TextCond.negative (the unconditional prompt embeddings)")
        pooled = None
        if self.pooled is not None:
            if self.negative_pooled is None:
                raise ValueError("guidance with pooled embeddings needs TextCond.negative_pooled")
            pooled = torch.cat([self.negative_pooled, self.pooled])
        time_ids = None if self.time_ids is None else torch.cat([self.time_ids, self.time_ids])
        return TextCond(torch.cat([self.negative, self.embeds]), pooled=pooled, time_ids=time_ids)


@dataclass
class ClassCond:
    """Class labels [B] (int64) with the model's null (unconditional) label."""

    labels: torch.Tensor
    null_label: int

    def with_uncond(self) -> ClassCond:
        return ClassCond(torch.cat([torch.full_like(self.labels, self.null_label), self.labels]), self.null_label)


@dataclass
class Guided:
    """A conditioning with its own per-sample guidance scale [B] (a graph input), used instead of the
    denoiser's fixed scale; the guided call is then always the batched one, whatever the scale."""

    cond: TextCond | ClassCond | torch.Tensor
    scale: torch.Tensor


NetCall = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


def guided(net: NetCall, x_in: torch.Tensor, t: torch.Tensor, cond: object, scale: float,
           null_label: int = 0) -> torch.Tensor:
    """net(x_in, t, cond), or with guidance one batched call: out_u + scale * (out_c - out_u).

    Plain int64 labels [B] (the Denoiser convention) guide against `null_label`; a `Guided` cond
    brings its own per-sample scale [B].
    """
    if isinstance(cond, Guided):
        cond, scale = cond.cond, cond.scale
    if isinstance(cond, torch.Tensor):
        cond = ClassCond(cond, null_label)
    if cond is None or (not isinstance(scale, torch.Tensor) and scale == 1.0):
        return net(x_in, t, cond)
    out = net(torch.cat([x_in, x_in]), torch.cat([t, t]), cond.with_uncond())
    b = x_in.shape[0]
    out_u, out_c = out[:b], out[b:]  # slices, not chunk(2): chunk's size guards pin a traced batch
    if isinstance(scale, torch.Tensor):
        scale = scale.to(out.dtype).reshape(-1, *([1] * (out.ndim - 1)))
    return out_u + scale * (out_c - out_u)
