"""Graph precision: fp32, or an EDM network whose convolution path runs in fp16/bf16 (docs/export.md "Precision").

TensorRT 11 is strongly typed, so a half-precision graph must carry its types itself. Following
EDM's own mixed precision (`use_fp16`): the preconditioning, the solver arithmetic and the graph's
inputs and outputs stay float32; the network's input is cast to half, convolution weights are
stored in half, and every normalisation layer computes in float32 (cast in, cast back). The
attention softmax is already float32 in `networks.layers.attention_weights`, and the noise/label
embedding MLP sees float32 inputs, so it stays float32 as in EDM.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..denoiser import Denoiser
from ..errors import S4SError, choice_error
from ..networks.layers import Conv2d, GroupNorm
from ..networks.precond import PRECOND_TYPES

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
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


def _wrap_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, NORMS):
            setattr(module, name, Float32Norm(child))
        else:
            _wrap_norms(child)


def with_precision(denoiser: Denoiser, precision: str) -> Denoiser:
    """The denoiser to export at `precision`: itself for fp32, else a half-precision copy (EDM networks only)."""
    dtype = precision_dtype(precision)
    if dtype == torch.float32:
        return denoiser
    if not isinstance(denoiser, tuple(PRECOND_TYPES.values())):
        raise S4SError(f"--precision {precision} needs an EDM network denoiser; model {denoiser.info.name!r} "
                       f"({type(denoiser).__name__}) is exported in its own precision: use --precision fp32")
    half = copy.deepcopy(denoiser)
    net = half.model
    for m in net.modules():
        if isinstance(m, Conv2d):
            m.to(dtype)
    _wrap_norms(net)
    half.model = HalfNetwork(net, dtype)
    return half.eval().requires_grad_(False)
