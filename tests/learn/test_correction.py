"""The correction parameterisation (learn/correction.py): base table plus a learned correction."""

import numpy as np
import pytest
import torch

from s4s_export.learn.config import TrainConfig
from s4s_export.learn.correction import CorrectionStudent, make_student
from s4s_export.learn.pipeline import LearnRequest, learn
from s4s_export.learn.student import S4SStudent, StudentConfig, init_from_base
from s4s_export.sampler import Sampler
from s4s_export.solverfile import load_solver_file
from s4s_export.solvers import make_solver
from s4s_export.teacher import TeacherSpec


@pytest.mark.parametrize("name", ["ipndm", "deis", "dpmpp3m", "unipc3"])
@pytest.mark.parametrize("pc", [False, True])
def test_iteration0_is_the_base_for_every_base(gmm, name, pc):
    base = make_solver(name, 5, "logsnr")
    student, init = make_student("correction", StudentConfig(5, pc=pc, learn_times=True), base)
    table, _, start = student()
    np.testing.assert_allclose(table.detach().numpy(), base.table, rtol=0, atol=1e-12)
    assert init.exact and float(start.detach()) == base.sigma_start
    noise = torch.randn(4, *gmm.info.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(Sampler(gmm, student).double()(noise), Sampler(gmm, base).double()(noise),
                                   rtol=0, atol=1e-10)


def test_step_form_cannot_start_at_ipndm_but_correction_can():
    base = make_solver("ipndm", 5, "edm")
    assert not init_from_base(S4SStudent(StudentConfig(5), base.sigmas), base).exact


def test_grid_gradient_matches_autograd_of_the_step_form():
    # euler is c = 1 in the step form, so its table on any grid is S4SStudent.compose, which autograd differentiates
    base = make_solver("euler", 4, "edm")
    shape = StudentConfig(4, learn_times=True)
    corr, step = CorrectionStudent(shape, base), S4SStudent(shape, base.sigmas)
    init_from_base(step, base)
    w = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for m in (corr, step):
        with torch.no_grad():
            m.time_logits.add_(torch.tensor([0.2, -0.1, 0.3, -0.25], dtype=torch.float64))
            m.coeffs.add_(0.05)
        (m()[0] * w).sum().backward()
    torch.testing.assert_close(corr.time_logits.grad, step.time_logits.grad, rtol=1e-7, atol=1e-9)


def test_classical_part_follows_the_grid():
    base = make_solver("dpmpp3m", 4, "edm")
    student = CorrectionStudent(StudentConfig(4, learn_times=True), base)
    with torch.no_grad():
        student.time_logits.add_(torch.tensor([0.3, -0.2, 0.1, 0.0], dtype=torch.float64))
        table, _, _ = student()
        grid = student.grid().numpy()
    np.testing.assert_allclose(table.numpy(), make_solver("dpmpp3m", 4, grid.tolist()).table, rtol=0, atol=1e-12)


def test_learn_with_correction(tmp_path):
    cfg = TrainConfig(method="s4s-alt", base="ipndm:logsnr", parameterisation="correction", samples=16, batch=8,
                      val_samples=16, distance="pseudo-huber", epochs=1, alternations=2)
    (row,) = learn(LearnRequest("gmm", (4,), cfg, teacher=TeacherSpec("unipc3", 12, "logsnr"), workdir=str(tmp_path)))
    info = load_solver_file(row["solver_file"]).info
    assert info["base"]["init"] == "exact" and info["parameters"]["parameterisation"] == "correction"
    assert info["validation"]["iteration0"] == pytest.approx(info["validation"]["base"], rel=1e-9)
    assert row["learned_val"] < row["base_val"]
