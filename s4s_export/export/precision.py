"""Graph precision: float32, or a network (and decoder, text encoder) whose math runs in fp16/bf16
(docs/export.md "Precision").

TensorRT 11 is strongly typed, so a half-precision graph must carry its types itself. Following
EDM's own mixed precision (`use_fp16`): the preconditioning, the solver arithmetic and the graph's
inputs and outputs stay float32; the network's input is cast to half, convolution weights are
stored in half, and every normalisation layer computes in float32 (cast in, cast back). The
attention softmax is already float32 in `networks.layers.attention_weights`, and the noise/label
embedding MLP sees float32 inputs, so it stays float32 as in EDM.

Diffusers and CompVis networks (`net(x_in, t, cond)`, families/networks.py and families/compvis.py)
convert whole to half except their normalisation layers (float32, as above); the latent, the float
conditioning tensors and the output are cast at the network boundary, so the guidance combination and
the sampler stay float32. The timestep stays float32: the networks compute their sinusoidal timestep
embedding in float32 and cast it to the latent's dtype themselves (an fp16 timestep near 999 would
round to steps of 0.5). Attention layers configured to upcast (SD 2.1) compute their scores in float32
(`upcast_attention`). A latent decoder in half is cast the same way at its input and output; a text
encoder takes its int64 token ids as they are and casts its output.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..denoiser import Denoiser
from ..errors import S4SError, choice_error
from ..families.flow import FlowDenoiser
from ..families.guidance import TextCond
from ..families.vp import VPDenoiser
from ..networks.layers import Conv2d, GroupNorm
from ..networks.precond import PRECOND_TYPES
from .precision_spec import PRECISION_NAMES

PRECISIONS: dict[str, torch.dtype] = dict(zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16)))
NORMS = (GroupNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def precision_dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise choice_error("precision", precision, list(PRECISIONS))
    return PRECISIONS[precision]


class Float32Norm(nn.Module):
    """Runs a normalisation layer in float32 and returns the input's dtype."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


class HalfNetwork(nn.Module):
    """An EDM network (`forward(x, noise_labels, class_labels, **kw)`) with its image path in `dtype`."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        return self.net(x.to(self.dtype), noise_labels, class_labels, **kwargs).float()


def half_cond(cond: object, dtype: torch.dtype) -> object:
    """Conditioning for a half network: TextCond's float tensors in `dtype`; labels unchanged."""
    if not isinstance(cond, TextCond):
        return cond
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    return TextCond(cast(cond.embeds), cast(cond.negative), cast(cond.pooled), cast(cond.negative_pooled),
                    cast(cond.time_ids))


class HalfTimestepNetwork(nn.Module):
    """A `net(x_in, t, cond)` network in `dtype`: x_in and the conditioning cast in, t float32, output float32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self.net(x.to(self.dtype), t, half_cond(cond, self.dtype)).float()


class HalfModule(nn.Module):
    """A one-input module (a latent decoder) in `dtype`: its float input cast in, its output cast to float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.dtype)).float()


def _wrap_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, NORMS):
            setattr(module, name, Float32Norm(child))
        else:
            _wrap_norms(child)


def half_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `module` with floating parameters and buffers in `dtype` and float32 normalisation layers."""
    half = copy.deepcopy(module).to(dtype)
    _wrap_norms(half)
    return half.eval().requires_grad_(False)


def half_module(module: nn.Module, precision: str) -> nn.Module:
    """`module` itself for fp32, else a half copy between float32 casts (`HalfModule`)."""
    dtype = precision_dtype(precision)
    return module if dtype == torch.float32 else HalfModule(half_copy(module, dtype), dtype)


def with_precision(denoiser: Denoiser, precision: str) -> Denoiser:
    """The denoiser to export at `precision`: itself for fp32, else a copy whose network runs in half
    (EDM networks, and the `net(x_in, t, cond)` networks of diffusers and CompVis models); a latent
    decoder is shared, not copied."""
    dtype = precision_dtype(precision)
    if dtype == torch.float32:
        return denoiser
    if isinstance(denoiser, tuple(PRECOND_TYPES.values())):
        half = copy.deepcopy(denoiser)
        net = half.model
        for m in net.modules():
            if isinstance(m, Conv2d):
                m.to(dtype)
        _wrap_norms(net)
        half.model = HalfNetwork(net, dtype)
        return half.eval().requires_grad_(False)
    if not isinstance(denoiser, VPDenoiser | FlowDenoiser):
        raise S4SError(f"--precision {precision} needs an EDM network or a diffusers/CompVis one; model "
                       f"{denoiser.info.name!r} ({type(denoiser).__name__}) is exported in its own precision: "
                       f"use --precision fp32")
    net, decoder = denoiser.net, getattr(denoiser, "decoder", None)
    half = copy.deepcopy(denoiser, {id(m): m for m in (net, decoder) if m is not None})
    half.net = HalfTimestepNetwork(upcast_attention(half_copy(net, dtype)), dtype)
    return half.eval().requires_grad_(False)


def upcast_attention(net: nn.Module) -> nn.Module:
    """diffusers attention layers configured with `upcast_attention` (SD 2.1) get diffusers' own AttnProcessor,
    whose `Attention.get_attention_scores` computes the scores in float32; the default SDPA processor ignores
    the flag."""
    layers = [m for m in net.modules() if hasattr(m, "set_processor") and getattr(m, "upcast_attention", False)]
    if layers:
        from diffusers.models.attention_processor import AttnProcessor

        for m in layers:
            m.set_processor(AttnProcessor())
    return net

