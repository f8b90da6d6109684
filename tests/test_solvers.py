"""Solver tables: convergence orders on the exact model, table vs. recursion, NFE accounting."""

import numpy as np
import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.gmm import GaussianMixture, reference_solution
from s4s_export.sampler import Sampler
from s4s_export.schedules import make_schedule
from s4s_export.solvers import SOLVERS, get_solver, make_solver

# Convergence orders, except ipndm: 2, not 4 (constant AB4 weights on the non-uniform edm and
# logsnr steps; docs/solvers.md). dpmpp3m-kd is k-diffusion's published form of DPM-Solver++(3M), order 2.
ORDERS = {"euler": 1, "heun": 2, "dpmpp2m": 2, "dpmpp3m": 3, "dpmpp3m-kd": 2, "unipc": 3, "unipc-bh2": 3,
          "unipc3": 4, "unipc3-bh2": 4, "ipndm": 2, "deis": 3}
ORDER_NFES = (128, 192, 288, 432)  # asymptotic for every solver on edm and logsnr with the mixture below


def smooth_mixture(seed: int = 0) -> GaussianMixture:
    """4 wide components on 1x4x4 (variances 0.2-0.5, means 0.3 * N(0, 1)): smooth in log-sigma."""
    g = torch.Generator().manual_seed(seed)
    means = 0.3 * torch.randn(4, 16, generator=g, dtype=torch.float64)
    variances = 0.2 + 0.3 * torch.rand(4, 16, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(4, generator=g, dtype=torch.float64)
    return GaussianMixture(means, variances, weights, (1, 4, 4), "smooth-gmm")


def measured_order(model: GaussianMixture, noise: torch.Tensor, ref: torch.Tensor, name: str, schedule: str,
                   nfes: tuple[int, ...] = ORDER_NFES) -> tuple[float, list[float]]:
    """Least-squares slope of log RMSE (float64, vs. the reference solution) against log NFE, and the errors.

    Runs the solver's recursion directly (O(N) per run; the table is traced from it and checked
    against it in `test_table_matches_recursion`).
    """
    solver = get_solver(name)
    nfes = tuple(n + 1 if name == "heun" else n for n in nfes)
    errors = []
    for nfe in nfes:
        sigmas = make_schedule(schedule, solver.steps(nfe), model.info.sigma_min, model.info.sigma_max)
        out = solver.run(lambda x, s: model(x, torch.tensor(s, dtype=torch.float64)), noise * sigmas[0], sigmas)
        errors.append(float((out - ref).pow(2).mean().sqrt()))
    return -float(np.polyfit(np.log(nfes), np.log(errors), 1)[0]), errors


@pytest.fixture(scope="module")
def order_case():
    model = smooth_mixture()
    noise = torch.randn(8, *model.info.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = reference_solution(model, noise, model.info.sigma_max, model.info.sigma_min, rtol=1e-13, atol=1e-13)
    return model, noise, ref


def test_orders_cover_the_registry():
    assert ORDERS == {name: s.order for name, s in SOLVERS.items()}


@pytest.mark.parametrize("schedule", ["edm", "logsnr"])
@pytest.mark.parametrize("name", sorted(ORDERS))
def test_convergence_order(order_case, name, schedule):
    slope, errors = measured_order(*order_case, name, schedule)
    assert abs(slope - ORDERS[name]) <= 0.3, f"measured order {slope:.2f}, expected {ORDERS[name]} (errors {errors})"


def test_meta_keeps_the_convergence_order_and_the_options():
    assert make_solver("unipc", 5, "logsnr").meta == {"schedule": "logsnr", "order": 3, "predictor_order": 2,
                                                       "variant": "bh1"}
    assert make_solver("ipndm", 5).meta == {"schedule": "edm", "order": 2, "max_order": 4}
    assert make_solver("deis", 5, [80.0, 9.0, 1.0, 0.3, 0.01, 0.002]).meta == {"schedule": "explicit", "order": 3,
                                                                               "max_order": 3}


@pytest.mark.parametrize("nfe,schedule", [(7, "edm"), (13, "logsnr")])  # unipc lowers the final order below NFE 10
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_table_matches_recursion(gmm, name, nfe, schedule):
    table = make_solver(name, nfe, schedule)
    noise = torch.randn(3, *gmm.info.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    calls = []

    def denoise(x, sigma):
        calls.append(sigma)
        return gmm(x, torch.tensor(sigma, dtype=torch.float64))

    direct = get_solver(name).run(denoise, noise * table.sigma_start, table.sigmas)
    via_table = Sampler(gmm, table).double()(noise)
    assert len(calls) == nfe == table.nfe
    assert torch.allclose(via_table, direct, rtol=0, atol=1e-12), float((via_table - direct).abs().max())


def test_heun_nfe_accounting():
    t = make_solver("heun", 7)
    assert t.nfe == 7 and len(t.sigmas) == 5  # 4 steps, the last without correction
    assert np.allclose(t.eval_sigmas, t.sigmas[[0, 1, 1, 2, 2, 3, 3]])
    with pytest.raises(S4SError, match="odd NFE"):
        make_solver("heun", 6)


def test_table_shape():
    for name in SOLVERS:
        t = make_solver(name, 5, "logsnr")
        assert t.table.shape == (6, 6) and t.nfe == 5
        assert np.all(np.triu(t.table, 1) == 0)
        assert t.table[0, 0] == 1.0  # the first evaluation is at x_T itself
        assert t.eval_sigmas[0] == t.sigma_start and np.isclose(t.sigma_start, 80.0)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_exact_for_constant_denoiser(name):
    """With D(x, sigma) = c the ODE solution is x(sigma) = c + (x_T - c) sigma / sigma_max: every solver is exact."""
    t = make_solver(name, 5, "edm")
    a, b = t.table[-1, 0], t.table[-1, 1:].sum()
    assert np.isclose(a, t.sigma_end / t.sigma_start, rtol=1e-10, atol=1e-14)
    assert np.isclose(b, 1 - t.sigma_end / t.sigma_start, rtol=1e-10)


def test_errors_name_allowed_values():
    with pytest.raises(S4SError, match="unknown solver 'nope'; choose one of: euler"):
        make_solver("nope", 5)
    with pytest.raises(S4SError, match="needs NFE >= 3"):
        make_solver("dpmpp3m", 2)
    with pytest.raises(S4SError, match="unknown schedule"):
        make_solver("euler", 5, "cosine")
