"""The sampler module: gradients w.r.t. the table and sigmas, checkpointing, dtype handling."""

import pytest
import torch
from torch import nn

from s4s_export.errors import S4SError
from s4s_export.sampler import Sampler
from s4s_export.solvers import SolverTable, make_solver


class LearnableTable(nn.Module):
    """Table and evaluation sigmas as free parameters (the shape learning uses)."""

    def __init__(self, solver: SolverTable):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(solver.table))
        self.eval_sigmas = nn.Parameter(torch.tensor(solver.eval_sigmas))
        self.register_buffer("start", torch.tensor(solver.sigma_start))

    def forward(self):
        return torch.tril(self.table), self.eval_sigmas, self.start


def test_gradcheck_table_and_sigmas(gmm):
    base = make_solver("dpmpp2m", 3, "logsnr", sigma_max=5.0)
    noise = torch.randn(2, *gmm.info.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(table, sigmas):
        solver = LearnableTable(base)
        del solver.table, solver.eval_sigmas
        solver.table, solver.eval_sigmas = table, sigmas
        return Sampler(gmm, solver)(noise)

    table = torch.tensor(base.table, requires_grad=True)
    sigmas = torch.tensor(base.eval_sigmas, requires_grad=True)
    assert torch.autograd.gradcheck(f, (table, sigmas), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_checkpointing_gives_same_gradients(gmm):
    base = make_solver("dpmpp3m", 4, "edm")
    noise = torch.randn(3, *gmm.info.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for checkpointing in (False, True):
        solver = LearnableTable(base)
        out = Sampler(gmm, solver, checkpointing=checkpointing)(noise)
        out.pow(2).sum().backward()
        grads.append((solver.table.grad.clone(), solver.eval_sigmas.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-12)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-12)


def test_float32_noise_runs_float32_solver_arithmetic(gmm):
    sampler = Sampler(gmm, make_solver("euler", 3))
    out = sampler(torch.randn(2, *gmm.info.shape))
    assert out.dtype == torch.float32 and out.shape == (2, *gmm.info.shape)


def test_denoiser_called_once_per_nfe_with_eval_sigmas(gmm):
    table = make_solver("unipc", 6, "logsnr")
    seen = []

    class Spy(nn.Module):
        info = gmm.info

        def forward(self, x, sigma, cond=None):
            seen.append(float(sigma[0]))
            return gmm(x, sigma, cond)

    Sampler(Spy(), table).double()(torch.randn(1, *gmm.info.shape, dtype=torch.float64))
    assert seen == list(table.eval_sigmas)


@pytest.mark.parametrize("shape", [(2, 1, 8, 7), (2, 64), (1, 3, 8, 8)])
def test_noise_shape_must_match_the_model(gmm, shape):
    with pytest.raises(S4SError, match=r"noise must have shape \[B, 1, 8, 8\] for model 'gmm', got \[" + str(shape[0])):
        Sampler(gmm, make_solver("euler", 3))(torch.randn(*shape))
