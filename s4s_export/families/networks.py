"""Uniform calls into diffusers networks: `net(x_in, t, cond) -> model output` (eps, v or x0 channels only)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import S4SError
from .guidance import ClassCond, TextCond


class DiffusersNet(nn.Module):
    """A diffusers UNet or transformer called as net(x_in [B,C,H,W], t [B], cond).

    cond: None, `TextCond` (encoder_hidden_states; SDXL's pooled + time_ids as added_cond_kwargs;
    SD3's pooled as pooled_projections), `ClassCond` or int64 labels [B]. Networks that also
    output learned variances (out_channels = 2 * in_channels) return the first half.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.kind = type(net).__name__
        cfg = net.config
        self.channels = int(cfg.get("in_channels", 4))
        self.num_classes = int(cfg.get("num_embeds_ada_norm") or cfg.get("num_class_embeds") or 0) \
            if self.kind in ("DiTTransformer2DModel", "UNet2DModel") else 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: object = None) -> torch.Tensor:
        kw: dict = {}
        if isinstance(cond, TextCond):
            if self.kind == "SD3Transformer2DModel":
                kw = dict(encoder_hidden_states=cond.embeds, pooled_projections=cond.pooled)
            else:
                kw = dict(encoder_hidden_states=cond.embeds)
                if cond.pooled is not None:
                    kw["added_cond_kwargs"] = {"text_embeds": cond.pooled, "time_ids": cond.time_ids}
        elif isinstance(cond, ClassCond):
            kw = dict(class_labels=cond.labels)
        elif isinstance(cond, torch.Tensor):
            kw = dict(class_labels=cond)
        elif cond is not None:
            raise S4SError(f"unsupported conditioning {type(cond).__name__} for {self.kind}; pass TextCond, ClassCond "
                           f"or int64 labels")
        if self.kind in ("UNet2DConditionModel",) and "encoder_hidden_states" not in kw:
            raise S4SError(f"{self.kind} is text-conditioned: pass cond=TextCond(prompt_embeds [B, L, D])")
        if self.kind in ("SD3Transformer2DModel", "DiTTransformer2DModel"):
            out = self.net(hidden_states=x, timestep=t, **kw).sample
        else:
            out = self.net(x, t, **kw).sample
        return out[:, : self.channels] if out.shape[1] == 2 * self.channels else out


def wrap_network(net: nn.Module) -> DiffusersNet:
    return DiffusersNet(net.eval())
