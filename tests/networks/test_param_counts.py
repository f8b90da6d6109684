"""The official EDM configurations rebuild with EDM's exact parameter counts and key names."""

from __future__ import annotations

import pytest
import torch

from s4s_export.networks import build_network
from s4s_export.presets import CIFAR10 as CIFAR
from s4s_export.presets import DDPMPP, NCSNPP, PRESETS
from s4s_export.presets import FFHQ as FACES

ADM = PRESETS["imagenet64"].network.init_kwargs  # the architecture kwargs live in the preset table

CONFIGS = {
    "cifar10-uncond-vp": (dict(**CIFAR, **DDPMPP), 55_733_891),
    "cifar10-cond-vp": (dict(**CIFAR, **DDPMPP, label_dim=10), 55_735_299),
    "cifar10-uncond-ve": (dict(**CIFAR, **NCSNPP), 56_397_827),
    "cifar10-cond-ve": (dict(**CIFAR, **NCSNPP, label_dim=10), 56_400_643),
    "ffhq-afhqv2-64-vp": (dict(**FACES, **DDPMPP), 61_805_571),
    "ffhq-afhqv2-64-ve": (dict(**FACES, **NCSNPP), 62_761_091),
    "imagenet64-cond-adm": (ADM, 295_899_267),
}


def build_meta(kwargs: dict) -> torch.nn.Module:
    with torch.device("meta"):  # real module classes, no memory or init cost
        return build_network("EDMPrecond", **kwargs)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_official_parameter_counts(name: str) -> None:
    kwargs, expected = CONFIGS[name]
    net = build_meta(kwargs)
    assert sum(p.numel() for p in net.parameters()) == expected


def test_ddpmpp_cifar_key_names() -> None:
    sd = build_meta(CONFIGS["cifar10-cond-vp"][0]).state_dict()
    assert len(sd) == 427
    enc = [k.split(".")[2] for k in sd if k.startswith("model.enc.")]
    dec = [k.split(".")[2] for k in sd if k.startswith("model.dec.")]
    assert list(dict.fromkeys(enc)) == ["32x32_conv", *[f"32x32_block{i}" for i in range(4)],
                                        "16x16_down", *[f"16x16_block{i}" for i in range(4)],
                                        "8x8_down", *[f"8x8_block{i}" for i in range(4)]]
    assert list(dict.fromkeys(dec)) == ["8x8_in0", "8x8_in1", *[f"8x8_block{i}" for i in range(5)],
                                        "16x16_up", *[f"16x16_block{i}" for i in range(5)],
                                        "32x32_up", *[f"32x32_block{i}" for i in range(5)],
                                        "32x32_aux_norm", "32x32_aux_conv"]
    for key in ["model.map_label.weight", "model.map_label.bias", "model.map_augment.weight",
                "model.map_layer0.weight", "model.map_layer1.bias", "model.enc.16x16_down.conv0.resample_filter",
                "model.enc.16x16_down.skip.weight", "model.enc.16x16_block0.qkv.weight",
                "model.enc.16x16_block0.norm2.weight", "model.enc.16x16_block0.proj.bias",
                "model.dec.8x8_in0.qkv.weight", "model.dec.32x32_aux_conv.weight"]:
        assert key in sd, key
    assert "model.map_augment.bias" not in sd
    assert sd["model.enc.16x16_down.conv0.resample_filter"].shape == (1, 1, 2, 2)


def test_ncsnpp_cifar_key_names() -> None:
    sd = build_meta(CONFIGS["cifar10-cond-ve"][0]).state_dict()
    assert len(sd) == 434
    for key in ["model.map_noise.freqs", "model.enc.16x16_aux_residual.weight",
                "model.enc.16x16_aux_residual.resample_filter", "model.enc.8x8_aux_residual.bias"]:
        assert key in sd, key
    assert sd["model.enc.16x16_aux_residual.resample_filter"].shape == (1, 1, 4, 4)
    assert sd["model.map_noise.freqs"].shape == (128,)


def test_adm_key_names() -> None:
    sd = build_meta(ADM).state_dict()
    assert "model.map_label.bias" not in sd and "model.map_label.weight" in sd
    assert "model.out_norm.weight" in sd and "model.out_conv.bias" in sd
    assert "model.enc.64x64_conv.weight" in sd and "model.dec.64x64_block3.conv1.weight" in sd
    # non-projecting resample skip: only the filter buffer, no weights
    assert "model.enc.32x32_down.skip.resample_filter" in sd and "model.enc.32x32_down.skip.weight" not in sd
    assert sd["model.dec.8x8_in0.qkv.weight"].shape == (2304, 768, 1, 1)  # 12 heads of 64
