"""The built-in demo model: asset, loading, determinism, identity, and that it actually denoises."""

from __future__ import annotations

import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.networks.demo import DEMO_ASSET, demo_metadata, load_demo
from s4s_export.networks.precond import EDMPrecond


@pytest.fixture(scope="module")
def demo() -> EDMPrecond:
    return load_demo()


def test_asset_small_with_metadata() -> None:
    assert DEMO_ASSET.stat().st_size <= 10 * 1024 * 1024
    meta = demo_metadata()
    assert meta["network"]["class_name"] == "EDMPrecond"
    assert meta["network"]["init_kwargs"]["model_type"] == "SongUNet"
    assert meta["training"]["weights"] == "ema" and meta["training"]["P_mean"] == -1.2


def test_loads_as_demo_denoiser(demo: EDMPrecond) -> None:
    assert isinstance(demo, EDMPrecond) and not demo.training
    assert all(not p.requires_grad for p in demo.parameters())
    info = demo.info
    assert (info.name, info.shape, info.conditioning) == ("demo", (1, 16, 16), "none")
    assert (info.sigma_min, info.sigma_max) == (0.002, 80.0)
    assert sum(p.numel() for p in demo.parameters()) == demo_metadata()["training"]["params"]


def test_output_shape_and_determinism(demo: EDMPrecond) -> None:
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 3
    sigma = torch.tensor([0.002, 0.5, 3.0, 80.0])
    with torch.no_grad():
        a, b = demo(x, sigma), demo(x, sigma)
    assert a.shape == x.shape and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)


def test_identity_stable(demo: EDMPrecond) -> None:
    ident = demo.identity()
    assert len(ident) == 64 and ident == load_demo().identity()
    assert demo.identity_dict()["name"] == "demo"


def test_denoises_digits(demo: EDMPrecond) -> None:
    sklearn = pytest.importorskip("sklearn.datasets")
    x0 = torch.as_tensor(sklearn.load_digits().images[:32], dtype=torch.float32)[:, None] / 8 - 1
    x0 = torch.nn.functional.interpolate(x0, scale_factor=2, mode="bilinear")
    sigma = torch.tensor([0.3, 1.0]).repeat_interleave(16)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)) * sigma.reshape(-1, 1, 1, 1)
    with torch.no_grad():
        d = demo(x0 + noise, sigma)
    # the trained denoiser removes most of the noise (an untrained one leaves c_skip * x)
    err = (d - x0).square().mean(dim=(1, 2, 3)) / sigma**2
    assert err[:16].mean() < 0.3 and err[16:].mean() < 0.3


def test_missing_asset_names_command(tmp_path) -> None:
    with pytest.raises(S4SError, match="scripts/train_demo.py"):
        load_demo(tmp_path / "nope.safetensors")
