"""Building blocks of the EDM U-Nets (SongUNet, DhariwalUNet), written from the published formulas.

Parameter and buffer names match NVlabs/edm so that official weights load with strict=True.
Weights stay float32; every layer casts them to the input dtype, so a network runs in fp16 by
feeding it fp16 activations (as EDM does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


def weight_init(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """Random tensor with EDM's init modes (unit init_weight); uses the global torch RNG."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(f"unknown init_mode {mode!r}; choose one of: {', '.join(INIT_MODES)}")


class Linear(nn.Module):
    """Fully connected layer: y = x @ W^T + b, W of shape [out, in]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init_mode: str = "kaiming_normal",
                 init_weight: float = 1.0, init_bias: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(weight_init([out_features, in_features], **fans) * init_weight)
        self.bias = nn.Parameter(weight_init([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ self.weight.to(x.dtype).t()
        return x if self.bias is None else x + self.bias.to(x.dtype)


def _filter_2d(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR resampling filter [1, 1, k, k], normalised to unit DC gain."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    return (torch.outer(f, f) / f.sum().square()).reshape(1, 1, len(taps), len(taps))


class Conv2d(nn.Module):
    """Square 'same' convolution with optional FIR 2x up- or down-sampling.

    kernel=0 gives a pure resampling layer without weights. `resample_filter` is a buffer only
    when up or down is set. fused_resample merges resampling and convolution (EDM NCSN++).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter: Sequence[float] = (1, 1), fused_resample: bool = False,
                 init_mode: str = "kaiming_normal", init_weight: float = 1.0, init_bias: float = 0.0) -> None:
        if up and down:
            raise ValueError("Conv2d cannot both up- and down-sample")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        self.fused_resample = fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        w = weight_init([out_channels, in_channels, kernel, kernel], **fans) * init_weight if kernel else None
        self.weight = nn.Parameter(w) if w is not None else None
        b = weight_init([out_channels], **fans) * init_bias if kernel and bias else None
        self.bias = nn.Parameter(b) if b is not None else None
        self.register_buffer("resample_filter", _filter_2d(resample_filter) if up or down else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        f = self.resample_filter.to(x.dtype) if self.resample_filter is not None else None
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        c_in = self.in_channels
        if self.fused_resample and self.up and w is not None:
            x = F.conv_transpose2d(x, (f * 4).tile(c_in, 1, 1, 1), groups=c_in, stride=2, padding=max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile(self.out_channels, 1, 1, 1), groups=self.out_channels, stride=2)
        else:
            if self.up:  # zero-insertion upsampling filtered by 4*f (transposed depthwise conv)
                x = F.conv_transpose2d(x, (f * 4).tile(c_in, 1, 1, 1), groups=c_in, stride=2, padding=f_pad)
            if self.down:  # depthwise low-pass then stride 2
                x = F.conv2d(x, f.tile(c_in, 1, 1, 1), groups=c_in, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """Group normalisation with at most `num_groups` groups of at least `min_channels_per_group`."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), eps=self.eps)


def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Softmax(q^T k / sqrt(c)) over keys, computed in float32; q, k [N, C, L] -> [N, Lq, Lk]."""
    logits = torch.einsum("ncq,nck->nqk", q.float(), k.float() / math.sqrt(q.shape[1]))
    return logits.softmax(dim=2).to(q.dtype)


class UNetBlock(nn.Module):
    """Residual block (GroupNorm-SiLU-Conv twice, embedding injection) with optional self-attention.

    adaptive_scale=True applies the embedding as scale/shift after norm1 (ADM); False adds it
    before norm1 (DDPM++/NCSN++). The residual sum and the attention output are multiplied by
    skip_scale. Heads: num_heads if given, else out_channels // channels_per_head.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False, down: bool = False,
                 attention: bool = False, num_heads: int | None = None, channels_per_head: int = 64,
                 dropout: float = 0.0, skip_scale: float = 1.0, eps: float = 1e-5,
                 resample_filter: Sequence[float] = (1, 1), resample_proj: bool = False, adaptive_scale: bool = True,
                 init: dict | None = None, init_zero: dict | None = None, init_attn: dict | None = None) -> None:
        super().__init__()
        init = dict(init or {})
        init_zero = dict(init_zero) if init_zero is not None else dict(init_weight=0)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.emb_channels = emb_channels
        heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.num_heads = heads if attention else 0
        self.dropout = dropout
        self.skip_scale = float(skip_scale)
        self.adaptive_scale = adaptive_scale
        resample = dict(up=up, down=down, resample_filter=resample_filter)

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, **resample, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, **resample, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            attn_init = init_attn if init_attn is not None else init
            self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1, **attn_init)
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb).to(x.dtype)[:, :, None, None]
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale

        if self.num_heads:
            b, c, h, w = x.shape
            # qkv channels are laid out as [head, channel, (q, k, v)]
            q, k, v = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, h * w).unbind(2)
            a = torch.einsum("nqk,nck->ncq", attention_weights(q, k), v)
            x = (self.proj(a.reshape(b, c, h, w)) + x) * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of a [B] vector -> [B, C] as [cos | sin].

    Frequencies (1/max_positions)^(i / (C/2 - endpoint)), i = 0 .. C/2-1.
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a [B] vector -> [B, C] as [cos | sin](2 pi f x), f ~ N(0, scale^2)."""

    def __init__(self, num_channels: int, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)
