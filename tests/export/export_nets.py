"""Tiny random EDM SongUNets for the export tests."""

from __future__ import annotations

import torch

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
