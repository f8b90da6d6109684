"""The S4S student (docs/learning.md): learned step-form coefficients and, for S4S-Alt, a learned grid.

Step form (data prediction, DPM-Solver++ structure), with r_i = s_{i+1}/s_i on the step grid:

    x_{i+1} = r_i * x_i + (1 - r_i) * sum_{j < min(i+1, K)} c_{i,j} * D_{i-j}

With the predictor-corrector variant (`pc=True`, UniC style, no extra NFE) the state that the
next step starts from is re-computed once D_i is known, with its own weights:

    x^c_i = r_{i-1} * x^c_{i-1} + (1 - r_{i-1}) * sum_{j < min(i+1, K+1)} a_{i,j} * D_{i-j}   (i = 1..N-1)

while D_i is evaluated at the predicted point. The module composes these steps into the
(N+1)x(N+1) table of docs/solvers.md as a differentiable function of the parameters, so
`Sampler(denoiser, student)` runs it, learning backpropagates through it, and export bakes it.

The grid is the base schedule (plain S4S) or learned (S4S-Alt, joint): softmax of N logits,
cumulative sum, mapped onto [lambda(sigma_max), lambda(sigma_min)] (LD3). Optional decoupled
evaluation offsets move the sigma given to the denoiser at evaluations 1..N-1 by up to half the
smallest neighbouring gap in lambda; evaluation 0 stays at sigma_max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import S4SError
from ..solvers import SolverTable


@dataclass(frozen=True)
class StudentConfig:
    """What the student learns: NFE, order cap K, predictor-corrector, learned grid, evaluation-time offsets."""

    nfe: int
    order_cap: int = 3
    pc: bool = False
    learn_times: bool = False
    time_offsets: bool = False  # decoupled evaluation times: sigma offsets at evaluations 1..N-1

    def __post_init__(self) -> None:
        if self.nfe < 1:
            raise S4SError(f"NFE must be at least 1, got {self.nfe}")
        if self.order_cap < 1:
            raise S4SError(f"--order-cap must be at least 1, got {self.order_cap}")
        if self.time_offsets and not self.learn_times:
            raise S4SError("decoupled evaluation offsets are learned in the time phase: use them with --method s4s-alt "
                           "or joint")

    def predictor_slots(self) -> list[int]:
        """Number of weights at step i: min(i+1, K)."""
        return [min(i + 1, self.order_cap) for i in range(self.nfe)]

    def corrector_slots(self) -> list[int]:
        """Corrector weights after evaluation i = 1..N-1: min(i+1, K+1) (UniC: the new output plus K history)."""
        return [min(i + 1, self.order_cap + 1) for i in range(1, self.nfe)] if self.pc else []

    @property
    def num_coefficients(self) -> int:
        """m, the number of learned solver coefficients (sets the relaxation radius, learn/relax.py)."""
        return sum(self.predictor_slots()) + sum(self.corrector_slots())


def _slot_starts(slots: list[int]) -> list[int]:
    """Where each step's weights start in a flat coefficient vector (and, last, its length)."""
    return [0, *np.cumsum(slots).tolist()]


class S4SStudent(nn.Module):
    """Learnable solver; `forward()` returns (table [N+1,N+1], eval_sigmas [N], sigma_start []) in float64.

    Parameters: `coeffs` (predictor weights, flat), `corrector` (PC weights, flat, empty without PC),
    `time_logits` [N] and `time_offsets` [N] (used only when the config learns the grid / time offsets).
    """

    def __init__(self, config: StudentConfig, base_sigmas: np.ndarray):
        super().__init__()
        sig = np.asarray(base_sigmas, dtype=np.float64)
        if sig.shape != (config.nfe + 1,):
            raise S4SError(f"the student's grid needs {config.nfe + 1} sigmas for NFE {config.nfe}, got {sig.shape[0]}")
        self.config = config
        self._pred_starts = _slot_starts(config.predictor_slots())
        self._corr_starts = _slot_starts(config.corrector_slots())
        self.register_buffer("base_sigmas", torch.tensor(sig))
        lam = -np.log(sig)
        self.register_buffer("lam_range", torch.tensor([lam[0], lam[-1]]))
        self.coeffs = nn.Parameter(torch.zeros(self._pred_starts[-1], dtype=torch.float64))
        self.corrector = nn.Parameter(torch.zeros(self._corr_starts[-1], dtype=torch.float64))
        frac = np.diff(lam) / (lam[-1] - lam[0])
        self.time_logits = nn.Parameter(torch.tensor(np.log(frac)))
        self.time_offsets = nn.Parameter(torch.zeros(config.nfe, dtype=torch.float64))

    # --- parameter groups --------------------------------------------------------------------

    def coefficient_parameters(self) -> list[nn.Parameter]:
        return [self.coeffs, self.corrector] if self.config.pc else [self.coeffs]

    def time_parameters(self) -> list[nn.Parameter]:
        if not self.config.learn_times:
            return []
        return [self.time_logits, self.time_offsets] if self.config.time_offsets else [self.time_logits]

    def coefficient_vector(self) -> torch.Tensor:
        """All solver coefficients (predictor, then corrector) as one vector."""
        return torch.cat([self.coeffs, self.corrector])

    def set_coefficient_vector(self, p: torch.Tensor) -> None:
        with torch.no_grad():
            self.coeffs.copy_(p[: self.coeffs.numel()])
            self.corrector.copy_(p[self.coeffs.numel():])

    # --- the solver ------------------------------------------------------------------------

    def grid(self) -> torch.Tensor:
        """Step grid sigmas [N+1], sigma_max -> sigma_min."""
        if not self.config.learn_times:
            return self.base_sigmas
        u = torch.cumsum(torch.softmax(self.time_logits, 0), 0)[:-1]
        inner = torch.exp(-(self.lam_range[0] + u * (self.lam_range[1] - self.lam_range[0])))
        return torch.cat([self.base_sigmas[:1], inner, self.base_sigmas[-1:]])  # end points exact

    def eval_sigmas(self, grid: torch.Tensor) -> torch.Tensor:
        """Sigma passed to the denoiser at each evaluation: the grid, or the grid with clipped offsets."""
        if not self.config.time_offsets or self.config.nfe < 2:
            return grid[:-1]
        lam = -torch.log(grid)
        gaps = torch.diff(lam).detach()
        bound = 0.5 * torch.minimum(gaps[:-1], gaps[1:])  # evaluations 1..N-1
        off = torch.maximum(torch.minimum(self.time_offsets[1:], bound), -bound)
        return torch.cat([grid[:1], torch.exp(-(lam[1:-1] + off))])

    def compose(self, coeffs: torch.Tensor, corrector: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """The (N+1)x(N+1) table of the step form: rows are evaluation points, the last is the output."""
        n = self.config.nfe
        ratios = grid[1:] / grid[:-1]
        zero = grid.new_zeros(n + 1)

        def history(weights: torch.Tensor, newest: int) -> torch.Tensor:
            # weights[j] multiplies D_{newest-j}, which sits in column newest-j+1
            idx = torch.arange(newest + 1, newest + 1 - weights.numel(), -1)
            return zero.index_put((idx,), weights)

        rows = [zero.index_put((torch.tensor([0]),), grid.new_ones(1))]
        state = prev = rows[0]  # the state step i starts from, and the one step i-1 started from
        for i in range(n):
            if self.config.pc and i >= 1:
                a = corrector[self._corr_starts[i - 1] : self._corr_starts[i]]
                state = ratios[i - 1] * prev + (1 - ratios[i - 1]) * history(a, i)
            c = coeffs[self._pred_starts[i] : self._pred_starts[i + 1]]
            rows.append(ratios[i] * state + (1 - ratios[i]) * history(c, i))
            state, prev = rows[-1], state
        return torch.stack(rows)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grid = self.grid()
        return self.compose(self.coeffs, self.corrector, grid), self.eval_sigmas(grid), grid[0]

    def solver_table(self, name: str, meta: dict | None = None) -> SolverTable:
        """The current solver as a constant table (float64)."""
        with torch.no_grad():
            table, evals, _ = self()
            grid = self.grid()
        return SolverTable(table.cpu().numpy(), evals.cpu().numpy(), grid.cpu().numpy(), name, meta or {})

    def describe(self) -> dict:
        """The learned parameterisation, JSON-ready: per-step weights, grid, offsets."""
        with torch.no_grad():
            grid = self.grid()
            out = {
                "coefficients": [self.coeffs[self._pred_starts[i] : self._pred_starts[i + 1]].tolist()
                                 for i in range(self.config.nfe)],
                "coefficients_note": "coefficients[i][j] weighs D_{i-j} in step i (x_{i+1} = r_i x_i + (1-r_i) sum_j "
                                     "c_ij D_{i-j})",
                "grid_sigmas": grid.tolist(),
            }
            if self.config.pc:
                out["corrector"] = [self.corrector[self._corr_starts[i] : self._corr_starts[i + 1]].tolist()
                                    for i in range(self.config.nfe - 1)]
                out["corrector_note"] = "corrector[i-1][j] weighs D_{i-j} in the corrected state after evaluation i"
            if self.config.learn_times:
                out["time_logits"] = self.time_logits.tolist()
            if self.config.time_offsets:
                out["eval_sigmas"] = self.eval_sigmas(grid).tolist()
        return out


@dataclass(frozen=True)
class InitReport:
    """How the coefficients were initialised from the base solver's table."""

    base: str
    exact: bool
    max_abs_error: float

    @property
    def how(self) -> str:
        return "exact" if self.exact else "least-squares"

    def to_dict(self) -> dict:
        return {"solver": self.base, "init": self.how, "init_max_abs_table_error": self.max_abs_error}


EXACT_TOL = 1e-12


def check_base(base: SolverTable) -> None:
    """A base must evaluate once per step of its grid, at the grid sigmas (the step form's structure)."""
    if base.sigmas.shape[0] != base.nfe + 1 or not np.allclose(base.eval_sigmas, base.sigmas[:-1], rtol=1e-12, atol=0):
        raise S4SError(f"base solver {base.name!r} must evaluate once per step of its grid (heun does not); "
                       "pick e.g. dpmpp3m, unipc, ipndm, euler, dpmpp2m, deis")


def init_from_base(student: S4SStudent, base: SolverTable) -> InitReport:
    """Set the coefficients so the student's table matches the base solver's table.

    With the grid fixed the table is affine in the coefficients, so this is one linear
    least-squares problem over all table entries. Where the step form expresses the base
    exactly the fit is exact (residual at rounding level), and iteration 0 reproduces the base;
    otherwise it is the least-squares fit, reported as such. With PC the system is
    under-determined: the solution nearest to "corrector reproduces the predictor" is taken.
    """
    config = student.config
    check_base(base)
    if base.nfe != config.nfe:
        raise S4SError(f"base solver {base.name!r} has NFE {base.nfe}, the student {config.nfe}")
    grid = torch.tensor(base.sigmas, dtype=torch.float64)
    n_c = student.coeffs.numel()

    def table_of(p: torch.Tensor) -> torch.Tensor:
        return student.compose(p[:n_c], p[n_c:], grid)

    p0 = torch.zeros(student.coefficient_vector().numel(), dtype=torch.float64)
    if config.pc:  # plain fit first, then a corrector that reproduces the predicted point
        plain = S4SStudent(StudentConfig(config.nfe, config.order_cap), base.sigmas)
        init_from_base(plain, base)
        p0[:n_c] = plain.coeffs.detach()
        for i in range(1, config.nfe):
            prev = plain.coeffs.detach()[plain._pred_starts[i - 1] : plain._pred_starts[i]]
            p0[n_c + student._corr_starts[i - 1] + 1 : n_c + student._corr_starts[i - 1] + 1 + prev.numel()] = prev
    jac = torch.autograd.functional.jacobian(table_of, p0).reshape(-1, p0.numel())
    with torch.no_grad():
        target = torch.tensor(base.table) - table_of(p0)
    delta = np.linalg.lstsq(jac.numpy(), target.reshape(-1).numpy(), rcond=None)[0]
    p = p0 + torch.from_numpy(delta)
    with torch.no_grad():
        err = float((table_of(p) - torch.tensor(base.table)).abs().max())
    student.set_coefficient_vector(p)
    if not math.isfinite(err):
        raise S4SError(f"could not initialise the student from base solver {base.name!r}")
    return InitReport(base.name, err <= EXACT_TOL * max(1.0, float(np.abs(base.table).max())), err)
