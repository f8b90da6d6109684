"""The S4S student: iteration 0 reproduces the base, the table is the step form, gradients reach every parameter."""

import numpy as np
import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.learn.student import S4SStudent, StudentConfig, init_from_base
from s4s_export.sampler import Sampler
from s4s_export.solvers import make_solver


def _noise(gmm, n=6, seed=0):
    return torch.randn(n, *gmm.info.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("base", ["dpmpp3m", "unipc", "dpmpp2m", "euler", "dpmpp3m-kd", "unipc-bh2"])
@pytest.mark.parametrize("learn_times,pc", [(False, False), (True, False), (False, True)])
def test_iteration0_equals_base(gmm, base, learn_times, pc):
    table = make_solver(base, 5, "edm")
    student = S4SStudent(StudentConfig(5, 3, pc=pc, learn_times=learn_times, time_offsets=learn_times), table.sigmas)
    report = init_from_base(student, table)
    assert report.exact and report.how == "exact"
    t, e, s0 = student()
    assert np.allclose(t.detach().numpy(), table.table, rtol=0, atol=1e-12)
    assert (np.allclose(e.detach().numpy(), table.eval_sigmas, rtol=1e-13, atol=0)
            and float(s0.detach()) == table.sigma_start)
    noise = _noise(gmm)
    with torch.no_grad():
        out_student = Sampler(gmm, student)(noise)
        out_base = Sampler(gmm, table).double()(noise)
    assert torch.allclose(out_student, out_base, rtol=0, atol=1e-10)


def test_unipc3_needs_pc_or_higher_cap_to_be_exact():
    table = make_solver("unipc3", 5, "edm")
    capped = S4SStudent(StudentConfig(5, 3), table.sigmas)
    assert init_from_base(capped, table).how == "least-squares"
    for shape in (StudentConfig(5, 4), StudentConfig(5, 3, pc=True)):
        assert init_from_base(S4SStudent(shape, table.sigmas), table).exact


def test_ipndm_is_least_squares_and_reported():
    table = make_solver("ipndm", 5, "logsnr")
    student = S4SStudent(StudentConfig(5, 3), table.sigmas)
    report = init_from_base(student, table)
    assert not report.exact and report.max_abs_error > 1e-6
    assert report.to_dict()["init"] == "least-squares"


def test_heun_is_refused_as_base():
    table = make_solver("heun", 5, "edm")
    with pytest.raises(S4SError, match="evaluate once per step"):
        init_from_base(S4SStudent(StudentConfig(5), make_solver("euler", 5).sigmas), table)


def test_table_is_the_step_form(gmm):
    """Random coefficients: the composed table gives what the step-form recursion gives when run directly."""
    torch.manual_seed(0)
    shape = StudentConfig(6, 3)
    sig = make_solver("euler", 6, "logsnr").sigmas
    student = S4SStudent(shape, sig)
    with torch.no_grad():
        student.coeffs.copy_(torch.randn_like(student.coeffs))
    noise = _noise(gmm, 3)
    x, outs = noise * sig[0], []
    for i in range(6):
        outs.append(gmm(x, torch.tensor(sig[i], dtype=torch.float64)))
        c = student.coeffs.detach()[student._pred_starts[i]: student._pred_starts[i + 1]]
        r = sig[i + 1] / sig[i]
        x = r * x + (1 - r) * sum(c[j] * outs[i - j] for j in range(c.numel()))
    with torch.no_grad():
        assert torch.allclose(Sampler(gmm, student)(noise), x, rtol=0, atol=1e-10)


def test_pc_corrector_changes_state_not_evaluation_count(gmm):
    shape = StudentConfig(4, 2, pc=True)
    table = make_solver("unipc", 4, "logsnr")
    student = S4SStudent(shape, table.sigmas)
    init_from_base(student, table)
    assert shape.num_coefficients == sum(min(i + 1, 2) for i in range(4)) + sum(min(i + 1, 3) for i in range(1, 4))
    before = student()[0].detach().clone()
    with torch.no_grad():
        student.corrector[0] += 0.1  # weight on D_1 in the state after evaluation 1
    after = student()[0].detach()
    assert torch.equal(after[:2], before[:2]) and not torch.allclose(after[2:], before[2:])


def test_num_coefficients():
    assert StudentConfig(5, 3).num_coefficients == 12
    assert StudentConfig(3, 3).num_coefficients == 6
    assert StudentConfig(8, 1).num_coefficients == 8


def test_learned_grid_is_monotone_with_exact_end_points():
    table = make_solver("dpmpp3m", 6, "edm")
    student = S4SStudent(StudentConfig(6, 3, learn_times=True, time_offsets=True), table.sigmas)
    with torch.no_grad():
        student.time_logits.copy_(torch.randn(6, generator=torch.Generator().manual_seed(3)) * 3)
        student.time_offsets.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0, 5.0, -5.0]))
        grid = student.grid()
        evals = student.eval_sigmas(grid)
    assert torch.all(torch.diff(grid) < 0)
    assert float(grid[0]) == table.sigmas[0] and float(grid[-1]) == table.sigmas[-1]
    lam, lam_e = -torch.log(grid), -torch.log(evals)
    gaps = torch.diff(lam)
    bound = 0.5 * torch.minimum(gaps[:-1], gaps[1:])
    assert float(evals[0]) == float(grid[0])
    assert torch.allclose((lam_e[1:] - lam[1:-1]).abs(), bound, rtol=1e-12)  # clipped at half the smallest gap


def test_gradient_reaches_coefficients_time_logits_and_offsets(gmm):
    table = make_solver("dpmpp3m", 5, "logsnr")
    student = S4SStudent(StudentConfig(5, 3, pc=True, learn_times=True, time_offsets=True), table.sigmas)
    init_from_base(student, table)
    with torch.no_grad():
        student.time_offsets.fill_(0.01)
    noise = _noise(gmm, 4).float()
    out = Sampler(gmm, student, checkpointing=True)(noise)
    out.pow(2).mean().backward()
    for name in ("coeffs", "corrector", "time_logits", "time_offsets"):
        g = getattr(student, name).grad
        assert g is not None and torch.isfinite(g).all() and g[1:].abs().sum() > 0, name
