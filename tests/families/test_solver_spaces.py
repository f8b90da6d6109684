"""Solver tables in a model space (docs/solvers.md): grids to sigma 0, flow grids from sigma = inf."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from s4s_export.denoiser import Denoiser, ModelInfo
from s4s_export.errors import S4SError
from s4s_export.sampler import Sampler
from s4s_export.schedules import edm, noise_level, space_scale
from s4s_export.solvers import SOLVERS, SolverTable, make_solver

SD = 0.7  # data std of the Gaussian test model


class Gaussian(Denoiser):
    """Exact denoiser of x0 ~ N(0, SD^2) in any model space."""

    def __init__(self, space: str):
        super().__init__()
        self.info = ModelInfo(f"gauss-{space}", (1, 4, 4), 0.01, 50.0 if space != "flow" else float("inf"), space=space)

    def forward(self, x, sigma, cond=None):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return SD**2 / (SD**2 + s**2) * x

    def forward_scaled(self, x_in, sigma, cond=None):
        s = torch.as_tensor(sigma, dtype=x_in.dtype).reshape(-1, 1, 1, 1)
        if self.info.space == "ve":
            return self(x_in, sigma)
        # x = x_in / c(s); SD^2 / (SD^2 + s^2) / c(s) stays finite at s = inf for flow (-> SD^2 at c = 1/(1+s))
        c = space_scale(self.info.space, s)
        return torch.where(torch.isinf(s), SD**2 * x_in, SD**2 / (SD**2 + s**2) * x_in / c)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_classical_solvers_are_exact_for_zero_denoiser(name):
    """Column 0 is sigma_m / sigma_0: the property trace_table_in_space uses for the limit sigma_0 = inf."""
    t = make_solver(name, 7 if name == "heun" else 6, "edm", 0.002, 80.0)
    at = np.array([*t.eval_sigmas, t.sigma_end])
    assert np.allclose(t.table[:, 0], at / t.sigma_start, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", ["euler", "dpmpp2m", "heun", "unipc", "deis"])
def test_vp_table_samples_like_ve_table(name):
    nfe = 7 if name == "heun" else 6
    sigmas = edm(nfe if name != "heun" else 4, 0.01, 50.0)
    ve = make_solver(name, nfe, sigmas.tolist(), 0.01, 50.0)
    vp = make_solver(name, nfe, sigmas.tolist(), 0.01, 50.0, space="vp")
    assert "space" not in ve.to_dict() and vp.to_dict()["space"] == "vp"
    assert vp.noise_scale == pytest.approx(noise_level("vp", 50.0))
    model = Gaussian("vp").double()
    noise = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    x_ve = Sampler(model, ve)(noise)  # VE table: the model's VE forward
    y_vp = Sampler(model, vp)(noise)  # VP rows: forward_scaled, output c(sigma_end) x
    assert torch.allclose(y_vp, x_ve * space_scale("vp", 0.01), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["euler", "dpmpp2m"])
def test_grid_to_zero_ends_with_denoise(name):
    sigmas = [*edm(5, 0.03, 14.6)[:-1], 0.0]
    t = make_solver(name, 5, sigmas, 0.03, 14.6, space="vp", start_scale=1.0)
    assert t.sigma_end == 0.0 and t.noise_scale == 1.0
    assert np.allclose(t.table[-1], np.eye(6)[-1], atol=1e-15)  # x_end = D_last
    with pytest.raises(S4SError, match="finite and positive"):
        make_solver(name, 5, sigmas, 0.03, 14.6)  # VE tables keep the strict grid


def test_flow_from_inf_matches_large_sigma_limit_and_exact_solution():
    n = 8
    t_grid = np.linspace(1, 0, n + 1)
    with np.errstate(divide="ignore"):
        sigmas = np.where(t_grid >= 1, np.inf, t_grid / (1 - t_grid))
    table = make_solver("euler", n, sigmas.tolist(), 0.1, np.inf, space="flow")
    assert table.sigma_start == np.inf and table.noise_scale == 1.0 and np.isfinite(table.table).all()
    near = sigmas.copy()
    near[0] = 1e9
    finite = make_solver("euler", n, near.tolist(), 0.1, 1e9, space="flow")
    assert np.allclose(table.table, finite.table, rtol=0, atol=1e-8)
    # Euler in flow space: rows are x_t = (1 - t) D + t * noise for a constant D (docs/solvers.md)
    model = Gaussian("flow").double()
    noise = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    fine_t = np.linspace(1, 0, 401)
    with np.errstate(divide="ignore"):
        fine = np.where(fine_t >= 1, np.inf, fine_t / (1 - fine_t))
    out = Sampler(model, make_solver("euler", 400, fine.tolist(), 0.1, np.inf, space="flow"))(noise)
    assert torch.allclose(out, SD * noise, rtol=0, atol=5e-3)  # the exact PF-ODE map is x0 = SD * noise
    d = table.to_dict()
    back = SolverTable.from_dict(json.loads(json.dumps(d)))
    assert back.space == "flow" and back.sigma_start == np.inf and np.array_equal(back.table, table.table)


def test_solvers_without_a_limit_from_inf_are_refused():
    sigmas = [np.inf, 3.0, 1.0, 0.3, 0.0]
    with pytest.raises(S4SError, match="sigma = inf"):
        make_solver("heun", 5, [np.inf, 3.0, 1.0, 0.3], 0.3, np.inf, space="flow")
    assert np.isfinite(make_solver("dpmpp2m", 4, sigmas, 0.3, np.inf, space="flow").table).all()
    with pytest.raises(S4SError, match="finite and positive"):
        make_solver("euler", 4, sigmas, 0.3, np.inf, space="vp")  # inf start only where the space allows (flow)


def test_sampler_refuses_a_table_of_another_space():
    table = make_solver("euler", 3, edm(3, 0.01, 10.0).tolist(), 0.01, 10.0, space="flow")
    with pytest.raises(S4SError, match="model space 'flow'"):
        Sampler(Gaussian("vp").double(), table)(torch.randn(1, 1, 4, 4, dtype=torch.float64))
