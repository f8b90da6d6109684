"""The correction parameterisation (`--param correction`): the base solver's own table plus a learned correction.

GS (Generalized Solver, GAS paper; code 3145tttt/GAS, `src/gas/generalized_solver.py`) writes each
step as the DPM-Solver++ coefficients *recomputed on the current time steps* plus learned
differences initialised at 0. The same idea on our tables (docs/learning.md, "Parameterisation"):

    table(grid; delta) = classical_table(base, grid) + compose(delta, grid) - compose(0, grid)

`classical_table` traces the base solver's recursion on the current grid (`solvers.trace_table`);
`compose` is the step form of `S4SStudent` (affine in its weights, so the second part is linear in
delta and 0 at delta = 0). Consequences: iteration 0 is the base solver exactly, for every base
(ipndm and deis too, which the step form can only fit by least squares at order cap 3); and when the
time phase moves the grid the classical part follows it, as GS's coefficients do, instead of
keeping weights fitted to the old grid. The classical recursions work on Python floats, so the
gradient of the classical table with respect to the grid is taken by central differences in
log-sigma (the table is a smooth function of the N-1 inner sigmas; N+1 <= a few dozen traces).
"""

from __future__ import annotations

import numpy as np
import torch

from ..solvers import SolverTable, get_solver, trace_table
from .student import InitReport, S4SStudent, StudentConfig, check_base, init_from_base

PARAMETERISATIONS = ("step", "correction")
FD_STEP = 1e-6  # relative step in sigma for the central differences (float64)


def classical_table(name: str, nfe: int, sigmas: np.ndarray) -> np.ndarray:
    """The (N+1)x(N+1) table of classical solver `name` on an explicit grid."""
    solver = get_solver(name)
    return trace_table(lambda d, x, s: solver.run(d, x, s), nfe, [float(s) for s in sigmas])[0]


class _ClassicalTable(torch.autograd.Function):
    """grid [N+1] (float64) -> the base solver's table on it; backward by central differences."""

    @staticmethod
    def forward(ctx, grid: torch.Tensor, name: str, nfe: int) -> torch.Tensor:
        ctx.save_for_backward(grid)
        ctx.name, ctx.nfe = name, nfe
        return torch.from_numpy(classical_table(name, nfe, grid.detach().cpu().numpy())).to(grid)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grid,) = ctx.saved_tensors
        g = grid.detach().cpu().numpy()
        w = grad_out.detach().cpu().numpy()
        grad = np.zeros_like(g)
        for k in range(1, g.size - 1):  # the end points are fixed (buffers)
            up, down = g.copy(), g.copy()
            up[k] *= 1 + FD_STEP
            down[k] *= 1 - FD_STEP
            diff = classical_table(ctx.name, ctx.nfe, up) - classical_table(ctx.name, ctx.nfe, down)
            grad[k] = float((w * diff).sum()) / (2 * FD_STEP * g[k])
        return torch.from_numpy(grad).to(grid), None, None


class CorrectionStudent(S4SStudent):
    """`S4SStudent` whose weights are corrections to the base solver's table on the current grid (start: 0)."""

    def __init__(self, config: StudentConfig, base: SolverTable):
        check_base(base)
        super().__init__(config, base.sigmas)
        self.base_name = base.name

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grid = self.grid()
        base = _ClassicalTable.apply(grid, self.base_name, self.config.nfe)
        correction = self.compose(self.coeffs, self.corrector, grid) - self.compose(
            torch.zeros_like(self.coeffs), torch.zeros_like(self.corrector), grid)
        return base + correction, self.eval_sigmas(grid), grid[0]

    def describe(self) -> dict:
        out = super().describe()
        out["parameterisation"] = "correction"
        out["coefficients_note"] = ("coefficients[i][j]: the correction added to the base solver's own weight on "
                                    "D_{i-j} in step i, on the current grid (learn/correction.py)")
        return out


def make_student(parameterisation: str, shape: StudentConfig, base: SolverTable) -> tuple[S4SStudent, InitReport]:
    """The student for a base: step form fitted to it (`step`), or the base plus a zero correction (`correction`)."""
    if parameterisation == "correction":
        student = CorrectionStudent(shape, base)
        return student, InitReport(base.name, True, 0.0)
    student = S4SStudent(shape, base.sigmas)
    return student, init_from_base(student, base)
