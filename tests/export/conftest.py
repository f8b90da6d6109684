"""Fixtures for the export tests: tiny random EDM SongUNets registered as models, graphs built once per session."""

from __future__ import annotations

import pytest
import torch

from s4s_export import models
from s4s_export.export.build import BuildRequest, build_onnx
from s4s_export.networks import build_network

NUM_CLASSES = 3
TINY = dict(img_resolution=8, img_channels=1, model_type="SongUNet", model_channels=8, channel_mult=[1],
            num_blocks=1, attn_resolutions=[], dropout=0.0)


def tiny_net(label_dim: int = 0, name: str = "tiny") -> torch.nn.Module:
    """A seeded EDMPrecond(SongUNet) 1x8x8 (with the always-present 8x8 attention block), weights perturbed
    so that the whole network shapes the output (EDM zero-initialises output layers)."""
    torch.manual_seed(0)
    net = build_network("EDMPrecond", **TINY, label_dim=label_dim, name=name)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="session", autouse=True)
def tiny_models():
    """Register `tiny` (unconditional) and `tiny-cond` (NUM_CLASSES classes) for --model."""
    with pytest.MonkeyPatch.context() as mp:
        for name, labels in (("tiny", 0), ("tiny-cond", NUM_CLASSES)):
            mp.setitem(models.MODELS, name, models.ModelSpec(
                name, "test network", "1x8x8", "class" if labels else "none",
                lambda labels=labels, name=name: tiny_net(labels, name), lambda: True))
        yield


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """build(name, **request fields) -> BuildResult, cached per argument set for the whole session."""
    cache = {}
    root = tmp_path_factory.mktemp("graphs")

    def build(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            out = root / f"g{len(cache)}"
            cache[key] = build_onnx(BuildRequest(out=str(out), **kwargs))
        return cache[key]

    return build
