"""Layer-level behaviour of the EDM building blocks."""

from __future__ import annotations

import math

import pytest
import torch

from s4s_export.networks.layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBlock,
    attention_weights,
    weight_init,
)
from s4s_export.networks.songunet import swap_halves


@pytest.mark.parametrize("mode,bound", [("xavier_uniform", math.sqrt(6 / 30)), ("kaiming_uniform", math.sqrt(3 / 10))])
def test_uniform_init_bounds(mode: str, bound: float) -> None:
    torch.manual_seed(0)
    w = weight_init([20, 10], mode, fan_in=10, fan_out=20)
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_linear_init_scaling() -> None:
    lin = Linear(4, 3, init_mode="kaiming_uniform", init_weight=0, init_bias=0)
    assert lin.weight.abs().max() == 0 and lin.bias.abs().max() == 0
    assert Linear(4, 3, bias=False).bias is None


def test_positional_embedding_formula() -> None:
    x = torch.tensor([0.3, -1.5])
    for endpoint in (False, True):
        emb = PositionalEmbedding(8, endpoint=endpoint)(x)
        freqs = torch.tensor([(1 / 10000) ** (i / (4 - endpoint)) for i in range(4)])
        ref = torch.cat([torch.cos(x[:, None] * freqs), torch.sin(x[:, None] * freqs)], dim=1)
        torch.testing.assert_close(emb, ref)
    swapped = swap_halves(emb)
    torch.testing.assert_close(swapped[:, :4], emb[:, 4:])


def test_fourier_embedding_uses_buffer() -> None:
    torch.manual_seed(0)
    fe = FourierEmbedding(6, scale=16)
    assert "freqs" in fe.state_dict() and fe.freqs.shape == (3,)
    x = torch.tensor([0.25])
    ref = torch.cat([torch.cos(2 * math.pi * fe.freqs * x), torch.sin(2 * math.pi * fe.freqs * x)])[None]
    torch.testing.assert_close(fe(x), ref)


def test_groupnorm_groups() -> None:
    assert GroupNorm(16).num_groups == 4 and GroupNorm(256).num_groups == 32


@pytest.mark.parametrize("taps", [[1, 1], [1, 3, 3, 1]])
def test_resampling_conv(taps: list[int]) -> None:
    x = torch.randn(2, 3, 8, 8)
    down = Conv2d(3, 5, kernel=3, down=True, resample_filter=taps)
    up = Conv2d(3, 5, kernel=3, up=True, resample_filter=taps)
    pure = Conv2d(3, 3, kernel=0, down=True, resample_filter=taps)
    fused = Conv2d(3, 5, kernel=3, down=True, resample_filter=taps, fused_resample=True)
    assert down(x).shape == (2, 5, 4, 4) and fused(x).shape == (2, 5, 4, 4) and up(x).shape == (2, 5, 16, 16)
    assert set(pure.state_dict()) == {"resample_filter"} and "resample_filter" not in Conv2d(3, 3, 3).state_dict()
    assert float(down.resample_filter.sum()) == pytest.approx(1.0)
    # a constant image stays constant in the interior after low-pass resampling
    assert torch.allclose(pure(torch.ones(1, 3, 8, 8))[..., 1:-1, 1:-1], torch.ones(1, 3, 2, 2))
    # [1,1] down-sampling is 2x2 average pooling
    if taps == [1, 1]:
        torch.testing.assert_close(pure(x), torch.nn.functional.avg_pool2d(x, 2))


def test_attention_softmax_fp32() -> None:
    q, k = torch.randn(2, 8, 5).half(), torch.randn(2, 8, 7).half()
    w = attention_weights(q, k)
    assert w.dtype == torch.float16 and w.shape == (2, 5, 7)
    torch.testing.assert_close(w.float().sum(-1), torch.ones(2, 5), atol=2e-3, rtol=0)


def test_unet_block_heads_and_skip() -> None:
    blk = UNetBlock(32, 64, emb_channels=16, attention=True, channels_per_head=16)
    assert blk.num_heads == 4 and blk.qkv.weight.shape == (192, 64, 1, 1) and blk.skip.weight.shape == (64, 32, 1, 1)
    assert UNetBlock(32, 32, 16).skip is None
    same = UNetBlock(32, 32, 16, down=True)
    assert same.skip.weight is None and same.skip.resample_filter is not None
    y = blk(torch.randn(2, 32, 4, 4), torch.randn(2, 16))
    assert y.shape == (2, 64, 4, 4)
