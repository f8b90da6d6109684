"""The export module in PyTorch: image conversion, guidance inside the denoiser, half precision."""

import pytest
import torch
from export_nets import NUM_CLASSES, tiny_net

from s4s_export.errors import S4SError
from s4s_export.export.graph import sampler_graph, to_images
from s4s_export.export.guidance import GuidedDenoiser
from s4s_export.export.precision import Float32Norm, HalfNetwork, with_precision
from s4s_export.networks.layers import Conv2d, GroupNorm
from s4s_export.sampler import Sampler
from s4s_export.solvers import make_solver


def test_uint8_is_edm_conversion_of_clamped_float():
    x = torch.cat([torch.tensor([-1.5, -1.0, -0.5 / 127.5, 0.0, 1.0, 2.0]), torch.linspace(-1, 1, 1001)])
    x = x.reshape(1, 1, 1, -1).repeat(2, 3, 1, 1) * torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1)
    u = to_images(x, "uint8")
    assert u.dtype == torch.uint8 and u.shape == (2, 1, x.shape[-1], 3)
    edm = (to_images(x, "float") * 127.5 + 128).clip(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(u, edm)
    assert u[0, 0, :6, 0].tolist() == [0, 0, 127, 128, 255, 255]


def test_guidance_combines_one_doubled_call_per_evaluation():
    net = tiny_net(NUM_CLASSES)
    guided = GuidedDenoiser(net)
    calls = []
    net.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    x = torch.randn(4, 1, 8, 8)
    sigma = torch.full((4,), 2.0)
    labels = torch.tensor([0, 1, 2, NUM_CLASSES])
    d = guided(x, sigma, (labels, torch.tensor(2.5)))
    assert calls == [8]
    cond, uncond = net(x, sigma, labels), net(x, sigma, torch.full((4,), NUM_CLASSES))
    torch.testing.assert_close(d, uncond + 2.5 * (cond - uncond), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d[3], uncond[3], rtol=1e-5, atol=1e-5)  # the null label ignores the scale
    torch.testing.assert_close(guided(x, sigma, (labels, 1.0)), cond, rtol=1e-5, atol=1e-5)
    scales = torch.tensor([0.0, 1.0, 2.5, 4.0])  # one per sample, as graphs take it
    expected = uncond + scales.reshape(-1, 1, 1, 1) * (cond - uncond)
    torch.testing.assert_close(guided(x, sigma, (labels, scales)), expected, rtol=1e-5, atol=1e-5)


def test_guided_sampler_graph_runs_the_core_sampler_with_cond(gmm):
    from s4s_export.gmm import digits_gmm

    model = digits_gmm(True)
    solver = make_solver("dpmpp3m", 3, "logsnr")
    graph = sampler_graph(model, solver)
    noise = torch.randn(3, *model.info.shape)
    labels = torch.tensor([1, 7, 10])
    ref = Sampler(GuidedDenoiser(model), solver).float()(noise, (labels, torch.tensor(1.0))).clamp(-1, 1)
    out = graph(noise, labels, torch.tensor(1.0))
    torch.testing.assert_close(out, ref)
    cond_only = Sampler(model, solver).float()(noise, labels).clamp(-1, 1)
    torch.testing.assert_close(out, cond_only, rtol=1e-4, atol=1e-4)  # scale 1 is the conditional model


@pytest.mark.parametrize("precision,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_keeps_norms_io_and_preconditioning_in_float32(precision, dtype):
    net = tiny_net()
    half = with_precision(net, precision)
    assert isinstance(half.model, HalfNetwork) and net.model is not half.model.net  # a copy; the original is intact
    convs = [m for m in half.modules() if isinstance(m, Conv2d) and m.weight is not None]
    assert convs and all(m.weight.dtype == dtype for m in convs)
    norms = [m for m in half.modules() if isinstance(m, Float32Norm)]
    assert len(norms) == sum(isinstance(m, GroupNorm) for m in net.modules())
    seen = []
    for m in norms:
        m.norm.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out.dtype)))
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 3.0])
    out = half(x, sigma)
    assert out.dtype == torch.float32 and seen and set(seen) == {(torch.float32, torch.float32)}
    assert (out - net(x, sigma)).abs().max() < 0.05
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_half_precision_refuses_non_network_models(gmm):
    with pytest.raises(S4SError, match="--precision fp16 needs an EDM network"):
        with_precision(gmm, "fp16")
    with pytest.raises(S4SError, match="unknown precision 'fp8'"):
        with_precision(gmm, "fp8")
