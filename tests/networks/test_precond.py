"""Preconditioning wrappers: EDM formulas, labels, dtypes, sigma ranges, builder."""

from __future__ import annotations

import math

import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.networks import build_network
from s4s_export.networks.precond import EDMPrecond, VEPrecond, VPPrecond, iDDPMPrecond

TINY_SONG = dict(img_resolution=8, img_channels=3, model_type="SongUNet", model_channels=16, channel_mult=[1, 2],
                 num_blocks=1, attn_resolutions=[4], dropout=0.0)
TINY_ADM = dict(img_resolution=8, img_channels=3, model_type="DhariwalUNet", model_channels=32, channel_mult=[1, 2],
                num_blocks=1, attn_resolutions=[4], dropout=0.0)
SIGMAS = torch.tensor([0.002, 0.5, 5.0, 80.0])


def randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero weights everywhere (EDM zero-inits output convs, which would hide the network)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def test_edm_formula_against_raw_network() -> None:
    torch.manual_seed(0)
    net = randomize(EDMPrecond(label_dim=10, **TINY_SONG))
    x = torch.randn(4, 3, 8, 8)
    labels = torch.tensor([1, 3, 10, 7])
    one_hot = torch.zeros(4, 10)
    one_hot[[0, 1, 3], [1, 3, 7]] = 1
    s = SIGMAS.reshape(-1, 1, 1, 1)
    sd = 0.5
    f_x = net.model(x / (s**2 + sd**2).sqrt(), SIGMAS.log() / 4, one_hot)
    ref = sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt() * f_x
    out = net(x, SIGMAS, labels)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(net(x, SIGMAS, one_hot), ref)  # float one-hot is accepted as is


def test_null_label_is_unconditional() -> None:
    net = randomize(EDMPrecond(label_dim=10, **TINY_SONG))
    x = torch.randn(2, 3, 8, 8)
    uncond = net(x, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(net(x, torch.tensor([1.0, 2.0]), torch.tensor([10, 10])), uncond)
    assert not torch.allclose(net(x, torch.tensor([1.0, 2.0]), torch.tensor([0, 0])), uncond)
    assert net.info.conditioning == "class" and net.info.num_classes == 10


def test_scalar_sigma_and_dtype() -> None:
    net = randomize(EDMPrecond(**TINY_SONG))
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    out = net(x, 1.5)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, net(x.float(), torch.full((3,), 1.5)).double())
    assert net.info.shape == (3, 8, 8) and (net.info.sigma_min, net.info.sigma_max) == (0.002, 80.0)
    assert net.info.conditioning == "none"


def test_fp16_policy_keeps_float32_io() -> None:
    net = randomize(EDMPrecond(use_fp16=True, **TINY_SONG))
    x = torch.randn(2, 3, 8, 8)
    assert net.network_dtype(x) == torch.float32  # EDM runs fp16 only on CUDA
    ref = net(x, SIGMAS[:2])
    net.network_dtype = lambda x, force_fp32=False: torch.float16  # exercise the fp16 path on CPU
    out = net(x, SIGMAS[:2])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)


def test_vp_ve_coefficients() -> None:
    vp, ve = randomize(VPPrecond(**TINY_SONG)), randomize(VEPrecond(**TINY_SONG))
    assert vp.sigma_min == pytest.approx(0.001, rel=0.01) and vp.sigma_max == pytest.approx(152.17, rel=1e-3)
    t = torch.tensor([0.01, 0.3, 1.0])
    torch.testing.assert_close(vp.sigma_inv(vp.sigma(t)), t)
    x, s = torch.randn(3, 3, 8, 8), torch.tensor([0.1, 1.0, 10.0])
    sb = s.reshape(-1, 1, 1, 1)
    ref_vp = x - sb * vp.model(x / (sb**2 + 1).sqrt(), 999 * vp.sigma_inv(s), None)
    torch.testing.assert_close(vp(x, s), ref_vp)
    torch.testing.assert_close(ve(x, s), x + sb * ve.model(x, (0.5 * s).log(), None))
    assert (ve.info.sigma_min, ve.info.sigma_max) == (0.02, 80.0)


def test_iddpm_grid_and_rounding() -> None:
    net = randomize(iDDPMPrecond(**TINY_ADM))
    assert net.u.shape == (1001,) and float(net.u[-1]) == 0
    assert net.sigma_min == pytest.approx(0.00642, rel=1e-2) and net.sigma_max == pytest.approx(20291, rel=1e-2)
    assert net.model.out_channels == 6 and "u" in net.state_dict()
    s = torch.tensor([0.5, 3.0])
    r = net.round_sigma(s)
    idx = (s[:, None] - net.u[None]).abs().argmin(1)
    torch.testing.assert_close(r, net.u[idx])
    x = torch.randn(2, 3, 8, 8)
    sb = s.reshape(-1, 1, 1, 1)
    ref = x - sb * net.model(x / (sb**2 + 1).sqrt(), 999 - idx.float(), None)[:, :3]
    torch.testing.assert_close(net(x, s), ref)


def test_iddpm_grid_is_edms_float32_recurrence() -> None:
    """NVlabs/edm's own loop (training/networks.py iDDPMPrecond), transcribed: bit-identical, also on meta."""
    M, C_1, C_2 = 1000, 0.001, 0.008

    def alpha_bar(j: int) -> torch.Tensor:
        j = torch.as_tensor(j)
        return (0.5 * math.pi * j / M / (C_2 + 1)).sin() ** 2

    ref = torch.zeros(M + 1)
    for j in range(M, 0, -1):
        ref[j - 1] = ((ref[j] ** 2 + 1) / (alpha_bar(j - 1) / alpha_bar(j)).clip(min=C_1) - 1).sqrt()
    net = iDDPMPrecond(**TINY_ADM)
    assert torch.equal(net.u, ref) and (net.sigma_min, net.sigma_max) == (float(ref[M - 1]), float(ref[0]))
    with torch.device("meta"):  # checkpoint loading compares shapes on meta before allocating
        meta = iDDPMPrecond(**TINY_ADM)
    assert meta.u.is_meta and (meta.sigma_min, meta.sigma_max) == (net.sigma_min, net.sigma_max)
    with pytest.raises(S4SError, match="M=1000000 is out of range"):
        iDDPMPrecond(M=10**6, **TINY_ADM)


def test_dhariwal_conditional() -> None:
    net = randomize(EDMPrecond(label_dim=5, **TINY_ADM))
    x = torch.randn(2, 3, 8, 8)
    out = net(x, torch.tensor([0.3, 30.0]), torch.tensor([0, 5]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_build_network_roundtrip_strict() -> None:
    torch.manual_seed(1)
    kwargs = dict(TINY_SONG, embedding_type="fourier", encoder_type="residual", channel_mult_noise=2,
                  resample_filter=[1, 3, 3, 1], augment_dim=9, label_dim=10)
    a = build_network("EDMPrecond", **kwargs)
    b = build_network("EDMPrecond", **kwargs)
    b.load_state_dict(a.state_dict(), strict=True)
    assert a.identity() == b.identity()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(a(x, torch.tensor([1.0, 2.0])), b(x, torch.tensor([1.0, 2.0])))
    with pytest.raises(S4SError, match="unknown network class 'Nope'"):
        build_network("Nope")
    with pytest.raises(S4SError, match="encoder_type"):
        build_network("SongUNet", img_resolution=8, in_channels=3, out_channels=3, encoder_type="bad")


def test_skip_encoder_and_decoder() -> None:
    net = randomize(EDMPrecond(encoder_type="skip", decoder_type="skip", **TINY_SONG))
    names = set(net.model.enc) | set(net.model.dec)
    assert {"4x4_aux_down", "4x4_aux_skip", "4x4_aux_norm", "8x8_aux_up", "8x8_aux_conv"} <= names
    x = torch.randn(2, 3, 8, 8)
    assert net(x, torch.tensor([0.5, 5.0])).shape == x.shape
    with torch.no_grad():
        assert math.isfinite(float(net(x, 1.0).sum()))
