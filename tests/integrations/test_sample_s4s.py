"""sample_s4s: k-diffusion's sampler signature over any solver table equals our Sampler."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from integration_tables import CLASSICAL, classical, learned_like

from s4s_export.errors import S4SError
from s4s_export.integrations.kdiffusion import s4s_sigmas, sample_s4s
from s4s_export.modelref import load_model
from s4s_export.sampler import Sampler
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver


class KDiffusionWrapper(torch.nn.Module):
    """The shape of a k-diffusion denoiser wrapper: model(x, sigma [B], **extra_args) -> denoised."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.sigmas_seen: list[torch.Tensor] = []

    def forward(self, x, sigma, cond=None, scale=1.0):
        assert sigma.shape == (x.shape[0],)
        self.sigmas_seen.append(sigma)
        return self.inner(x, sigma, cond) * scale


@pytest.fixture(scope="module")
def demo():
    return load_model("demo").double()


def noise(demo, seed=0):
    return torch.randn(3, *demo.info.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name,nfe", [*CLASSICAL[:3], ("learned", 4)])
def test_equals_sampler_float64(demo, tmp_path, name, nfe):
    info = demo.info
    table = learned_like(classical("dpmpp2m", nfe, info.sigma_min, info.sigma_max)) if name == "learned" \
        else classical(name, nfe, info.sigma_min, info.sigma_max)
    path = save_solver_file(tmp_path / "s.json",
                            SolverFile(table, {"method": table.name, "model": demo.identity_dict()}))
    z = noise(demo)
    expected = Sampler(demo, table)(z)
    wrapper = KDiffusionWrapper(demo)
    got = sample_s4s(wrapper, z * table.sigma_start, s4s_sigmas(path, dtype=torch.float64), extra_args={"scale": 1.0},
                     solver=str(path))
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-8), (got - expected).abs().max()
    assert [float(s[0]) for s in wrapper.sigmas_seen] == pytest.approx(table.eval_sigmas.tolist(), rel=1e-12)


def test_extra_args_reach_the_model(demo):
    info = demo.info
    table = classical("euler", 3, info.sigma_min, info.sigma_max)
    z = noise(demo, 1) * table.sigma_start
    plain = sample_s4s(KDiffusionWrapper(demo), z, solver=table)
    scaled = sample_s4s(KDiffusionWrapper(demo), z, solver=table, extra_args={"scale": 0.5})
    assert not torch.allclose(plain, scaled)


def test_callback_gets_kdiffusion_dict(demo):
    """With the euler table, the callback sees exactly k-diffusion's sample_euler states (s_churn = 0)."""
    info = demo.info
    table = classical("euler", 4, info.sigma_min, info.sigma_max)
    z = noise(demo, 2) * table.sigma_start
    seen = []
    out = sample_s4s(KDiffusionWrapper(demo), z, callback=seen.append, solver=table)
    # k-diffusion sample_euler: denoised = model(x, sigma); d = (x - denoised) / sigma; x = x + d * (sigma_next - sigma)
    sigmas = torch.tensor(table.sigmas)
    x = z
    for i in range(len(sigmas) - 1):
        denoised = demo(x, sigmas[i] * x.new_ones(x.shape[0]))
        assert set(seen[i]) == {"x", "i", "sigma", "sigma_hat", "denoised"} and seen[i]["i"] == i
        assert (float(seen[i]["sigma"]) == pytest.approx(float(sigmas[i]), rel=1e-12)
                and seen[i]["sigma_hat"] == seen[i]["sigma"])
        assert torch.allclose(seen[i]["x"], x, rtol=1e-10, atol=1e-10)
        assert torch.allclose(seen[i]["denoised"], denoised, rtol=1e-10, atol=1e-10)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    assert len(seen) == 4 and torch.allclose(out, x, rtol=1e-10, atol=1e-10)


def test_float32_runs(demo):
    info = demo.info
    table = learned_like(classical("dpmpp2m", 3, info.sigma_min, info.sigma_max))
    model32 = load_model("demo")
    z = noise(demo).float() * table.sigma_start
    out = sample_s4s(KDiffusionWrapper(model32), z, solver=table)
    assert out.dtype == torch.float32
    ref = Sampler(demo, table)(z.double() / table.sigma_start)
    assert torch.allclose(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_wrong_sigmas_one_line_error(demo):
    info = demo.info
    table = classical("euler", 3, info.sigma_min, info.sigma_max)
    other = make_solver("euler", 4, "edm", info.sigma_min, info.sigma_max)
    with pytest.raises(S4SError, match=r"not this solver's grid .* pass sigmas=None") as e:
        sample_s4s(KDiffusionWrapper(demo), noise(demo), torch.tensor(other.sigmas), solver=table)
    assert "\n" not in str(e.value)


def test_missing_solver_and_missing_file(demo, tmp_path):
    with pytest.raises(S4SError, match="needs solver="):
        sample_s4s(KDiffusionWrapper(demo), noise(demo))
    with pytest.raises(S4SError, match="does not exist"):
        sample_s4s(KDiffusionWrapper(demo), noise(demo), solver=tmp_path / "nope.json")


def test_no_kdiffusion_needed():
    """sample_s4s imports and runs with k_diffusion blocked from importing."""
    code = ("import sys; sys.modules['k_diffusion'] = None; import torch; "
            "from s4s_export.integrations.kdiffusion import sample_s4s; "
            "from s4s_export.solvers import make_solver; t = make_solver('euler', 2, 'edm', 0.1, 10.0); "
            "x = sample_s4s(lambda x, s: 0.5 * x, torch.ones(1, 2), solver=t); print(float(x[0, 0]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out) > 0


def test_model_space_table_equals_its_ve_form(demo):
    """A table in VP model space (the diffusers form) runs on a k-diffusion VE denoiser and gives the VE
    table's sample; the callback still sees k-diffusion's x = x0 + sigma * eps."""
    info = demo.info
    ve = classical("dpmpp2m", 4, info.sigma_min, info.sigma_max)
    vp = make_solver("dpmpp2m", 4, "edm", info.sigma_min, info.sigma_max, space="vp")
    z = noise(demo, 3) * ve.sigma_start
    seen_ve, seen_vp = [], []
    out_ve = sample_s4s(KDiffusionWrapper(demo), z, callback=seen_ve.append, solver=ve)
    out_vp = sample_s4s(KDiffusionWrapper(demo), z, callback=seen_vp.append, solver=vp)
    assert torch.allclose(out_vp, out_ve, rtol=1e-10, atol=1e-10)
    for a, b in zip(seen_ve, seen_vp, strict=True):
        assert torch.allclose(a["x"], b["x"], rtol=1e-10, atol=1e-10)


def test_flow_table_from_infinity_is_refused(demo):
    table = make_solver("euler", 3, [float("inf"), 2.0, 0.5, 0.0], space="flow", start_scale=1.0)
    with pytest.raises(S4SError, match="starts at sigma = inf"):
        sample_s4s(KDiffusionWrapper(demo), noise(demo), solver=table)
