"""VP schedule math and the VP / flow adapters against diffusers' own scheduler formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from s4s_export.denoiser import ModelInfo
from s4s_export.errors import S4SError
from s4s_export.families.flow import FlowDenoiser, flow_sigma_range, shift_t, t_to_sigma
from s4s_export.families.guidance import ClassCond, guided
from s4s_export.families.vp import SigmaToTimestep, VPDenoiser, VPSchedule

from .tiny import SD_SCHEDULER, diffusers


class ConvNet(nn.Module):
    """A fixed random net(x, t, cond) whose output depends on x and t."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x, t, cond=None):
        return self.conv(x) * (1 + t.reshape(-1, 1, 1, 1) / 1000)


@pytest.mark.parametrize("config, lo, hi", [
    (SD_SCHEDULER, 0.0292, 14.61),
    (dict(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195), 0.0388, 83.82),
    (dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02), 0.0100, 157.4),
])
def test_schedule_ranges(config, lo, hi):  # docs/models.md
    s = VPSchedule.from_config(config)
    assert s.sigma_min == pytest.approx(lo, rel=2e-3) and s.sigma_max == pytest.approx(hi, rel=2e-3)


@pytest.mark.parametrize("config", [SD_SCHEDULER, dict(beta_schedule="squaredcos_cap_v2"),
                                    dict(trained_betas=np.linspace(1e-4, 0.02, 1000).tolist())])
def test_schedule_equals_diffusers(config):
    sched = diffusers.DDPMScheduler(**config)
    ours = VPSchedule.from_config(config)
    assert np.allclose(ours.alphas_cumprod, sched.alphas_cumprod.double().numpy(), rtol=1e-6, atol=0)


def test_bad_schedule_config():
    with pytest.raises(S4SError, match="beta_schedule"):
        VPSchedule.from_config(dict(beta_schedule="cubic"))
    with pytest.raises(S4SError, match="rescale_betas_zero_snr"):
        VPSchedule.from_config(dict(SD_SCHEDULER, rescale_betas_zero_snr=True))


def test_sigma_to_t_interpolation():
    s = VPSchedule.from_config(SD_SCHEDULER)
    ints = np.array([0, 1, 17, 500, 999])
    assert np.allclose(s.sigma_to_t(s.sigmas[ints]), ints, atol=1e-9)
    sig = np.exp(np.linspace(np.log(s.sigma_min), np.log(s.sigma_max), 257))
    t = s.sigma_to_t(sig)
    assert np.all(np.diff(t) > 0) and np.allclose(s.t_to_sigma(t), sig, rtol=1e-9)
    torch_t = SigmaToTimestep(s).double()(torch.tensor(sig)).numpy()
    assert np.allclose(torch_t, t, rtol=0, atol=2e-4)  # float32 log-sigma table
    # k-diffusion clamps outside the range
    assert SigmaToTimestep(s)(torch.tensor([1e-4, 1e3])).tolist() == [0.0, 999.0]


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_vp_denoiser_matches_scheduler_x0(prediction):
    """D(x0 + sigma_t eps, sigma_t) equals DDPMScheduler.step's pred_original_sample at integer t."""
    sched = diffusers.DDPMScheduler(**SD_SCHEDULER, prediction_type=prediction, clip_sample=False)
    schedule = VPSchedule.from_config(SD_SCHEDULER)
    info = ModelInfo("vp-test", (4, 8, 8), schedule.sigma_min, schedule.sigma_max, space="vp")
    net = ConvNet()
    model = VPDenoiser(net, schedule, prediction, info).double()
    torch.manual_seed(0)
    for t in [3, 250, 999]:
        sigma = float(schedule.sigmas[t])
        x = torch.randn(2, 4, 8, 8, dtype=torch.float64) * (1 + sigma)
        x_t = x / np.sqrt(1 + sigma**2)
        out = net.double()(x_t, torch.tensor([float(t)] * 2, dtype=torch.float64))
        ref = sched.step(out, t, x_t).pred_original_sample
        assert torch.allclose(model(x, torch.tensor([sigma] * 2, dtype=torch.float64)), ref, rtol=1e-6, atol=1e-6)
        assert torch.allclose(model.forward_scaled(x_t, torch.tensor(sigma, dtype=torch.float64)), ref,
                              rtol=1e-6, atol=1e-6)


def test_guidance_is_one_batched_call():
    calls = []

    def net(x, t, cond):
        calls.append(x.shape[0])
        return x * (1 + cond.labels.reshape(-1, 1, 1, 1).to(x.dtype))

    x, t = torch.ones(2, 1, 2, 2), torch.zeros(2)
    out = guided(net, x, t, ClassCond(torch.tensor([1, 2]), null_label=0), 3.0)
    assert calls == [4]
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([1 + 3.0 * 1, 1 + 3.0 * 2]))


def test_flow_math():
    assert shift_t(1.0, 3.0) == 1.0 and shift_t(0.0, 3.0) == 0.0 and shift_t(0.5, 3.0) == pytest.approx(0.75)
    assert t_to_sigma(np.array([1.0, 0.5, 0.0])).tolist() == [float("inf"), 1.0, 0.0]
    lo, hi = flow_sigma_range(dict(shift=3.0))
    assert hi == float("inf") and lo == pytest.approx(0.003 / (1 - 0.003), rel=1e-2)


def test_flow_denoiser_formula_and_inf():
    info = ModelInfo("flow-test", (4, 8, 8), 1e-3, float("inf"), space="flow")
    net = ConvNet().double()
    model = FlowDenoiser(net, info).double()
    torch.manual_seed(0)
    x_in = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    for t in [1.0, 0.7, 0.05]:
        sigma = torch.tensor(float(t_to_sigma(t)), dtype=torch.float64)
        v = net(x_in, torch.full((2,), t * 1000, dtype=torch.float64))
        d = model.forward_scaled(x_in, sigma)
        assert torch.isfinite(d).all() and torch.allclose(d, x_in - t * v, rtol=1e-12, atol=1e-12)
        if t < 1:
            assert torch.allclose(model(x_in * (1 + sigma), sigma), d, rtol=1e-10, atol=1e-10)


def test_adapters_refuse_wrong_space():
    info = ModelInfo("x", (4, 8, 8), 0.1, 10.0)
    with pytest.raises(S4SError, match="space='vp'"):
        VPDenoiser(ConvNet(), VPSchedule.from_config(SD_SCHEDULER), "epsilon", info)
    with pytest.raises(S4SError, match="space='flow'"):
        FlowDenoiser(ConvNet(), info)
