"""Fixed-step solvers as data: evaluation sigmas plus a lower-triangular coefficient table.

A solver with N evaluations is (docs/solvers.md): the m-th denoiser call happens at
x_m = a_m * x_T + sum_{j<m} b_{m,j} * D_j, with x_T = sigmas[0] * noise, and row N gives the
output. A table in a model space other than "ve" (docs/solvers.md) holds the model's inputs
c(sigma_m) x_m instead, as combinations of z = start_scale * noise, so grids may end at sigma 0
and flow grids may start at sigma = inf. Classical solvers are written once as k-diffusion
style recursions over any vector type; `trace_table` runs a recursion on symbolic unit vectors
(float64) to fill the table, and the same recursion runs directly on tensors for checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .errors import S4SError, choice_error
from .schedules import SPACES, make_schedule, noise_level, space_scale, validate_sigmas

X = TypeVar("X")  # numpy array or torch tensor
Denoise = Callable[[Any, float], Any]
Recursion = Callable[..., Any]


@dataclass(frozen=True, eq=False)
class SolverTable:
    """Any fixed-step linear solver. float64; rows are [a_m, b_{m,0}, ..., b_{m,m-1}, 0, ...]."""

    table: np.ndarray  # (N+1, N+1)
    eval_sigmas: np.ndarray  # (N,) sigma passed to the denoiser at each evaluation
    sigmas: np.ndarray  # step grid: sigmas[0] = start (sigma_max), sigmas[-1] = end (sigma_min)
    name: str
    meta: dict = field(default_factory=dict)
    space: str = "ve"  # "ve": rows combine x_T = sigmas[0] * noise; else the model space of the rows (module doc)
    start_scale: float | None = None  # non-VE: z = start_scale * noise; default noise_level(space, sigmas[0])

    def __post_init__(self) -> None:
        t = np.asarray(self.table, dtype=np.float64)
        e = np.asarray(self.eval_sigmas, dtype=np.float64)
        object.__setattr__(self, "table", t)
        object.__setattr__(self, "eval_sigmas", e)
        if self.space not in SPACES:
            raise choice_error("solver table space", self.space, list(SPACES))
        model_space = self.space != "ve"
        object.__setattr__(self, "sigmas", validate_sigmas(self.sigmas, "solver sigmas", model_space,
                                                           self.space == "flow"))
        if model_space and self.start_scale is None:
            object.__setattr__(self, "start_scale", noise_level(self.space, self.sigmas[0]))
        n = e.shape[0] if e.ndim == 1 else -1
        if n < 1 or t.shape != (n + 1, n + 1):
            raise S4SError(f"solver table must be (N+1)x(N+1) for N={n} evaluations, got {t.shape}")
        finite_e = np.all(np.isfinite(e[1:])) and (np.isfinite(e[0]) or self.space == "flow")
        if not (np.all(np.isfinite(t)) and finite_e and np.all(e > 0)):
            raise S4SError("solver table and evaluation sigmas must be finite, sigmas positive")
        if np.any(np.triu(t, 1) != 0):
            raise S4SError("solver table must be lower-triangular: evaluation m may use only D_0..D_{m-1}")

    @property
    def nfe(self) -> int:
        return int(self.eval_sigmas.shape[0])

    @property
    def sigma_start(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_end(self) -> float:
        return float(self.sigmas[-1])

    @property
    def noise_scale(self) -> float:
        """The factor on unit noise of the state that column 0 multiplies (VE: x_T; else z)."""
        return self.sigma_start if self.space == "ve" else float(self.start_scale)

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "nfe": self.nfe,
            "sigmas": self.sigmas.tolist(),
            "eval_sigmas": self.eval_sigmas.tolist(),
            "table": self.table.tolist(),
            "meta": self.meta,
        }
        if self.space != "ve":  # VE tables keep their original records
            d.update(space=self.space, start_scale=self.start_scale)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SolverTable:
        return cls(np.array(d["table"]), np.array(d["eval_sigmas"]), np.array(d["sigmas"]), d["name"],
                   d.get("meta", {}), d.get("space", "ve"), d.get("start_scale"))


# --- recursions (k-diffusion style: one signature, any vector type) ---------------------------


def euler(denoise: Denoise, x: X, sigmas: Sequence[float]) -> X:
    """Euler on dx/dsigma = (x - D)/sigma (DDIM in sigma space)."""
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if math.isinf(s):  # the same step as a ratio, finite from sigma = inf (trace_table_in_space)
            x = (s_next / s) * x + (1 - s_next / s) * denoise(x, s)
            continue
        d = (x - denoise(x, s)) / s
        x = x + (s_next - s) * d
    return x


def heun(denoise: Denoise, x: X, sigmas: Sequence[float]) -> X:
    """EDM's Heun sampler: 2 evaluations per step, a plain Euler step on the last one."""
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoise(x, s)) / s
        x_pred = x + (s_next - s) * d
        if i == n - 1:
            x = x_pred
        else:
            d2 = (x_pred - denoise(x_pred, s_next)) / s_next
            x = x + (s_next - s) * (0.5 * d + 0.5 * d2)
    return x


def dpmpp2m(denoise: Denoise, x: X, sigmas: Sequence[float]) -> X:
    """DPM-Solver++(2M), data prediction, first step first order; a step to sigma 0 is first order (x = D),
    as in k-diffusion and diffusers' lower_order_final."""
    old, h_last = None, None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        den = denoise(x, s)
        h = math.log(s / s_next) if s_next > 0 else math.inf
        if old is None or s_next == 0:
            den_d = den
        else:
            r = h_last / h
            den_d = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old
        x = (s_next / s) * x + (-math.expm1(-h)) * den_d
        old, h_last = den, h
    return x


def dpmpp3m(denoise: Denoise, x: X, sigmas: Sequence[float], d2_scale: float = 2.0) -> X:
    """DPM-Solver++(3M), data prediction, lower-order warm start.

    With d2 = (d1_0 - d1_1)/(r0 + r1) ~ h^2 D''/2, the third-order term needs twice that
    divided difference (d2_scale = 2): then the method is third order (measured on the exact
    model). d2_scale = 1 is the form in k-diffusion's `sample_dpmpp_3m_sde` (eta = 0) and the
    DPM-Solver code, which converges at order 2 only; it is kept as `dpmpp3m-kd`.
    """
    den_1 = den_2 = None
    h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        den = denoise(x, s)
        h = math.log(s / s_next)
        x = (s_next / s) * x + (-math.expm1(-h)) * den
        phi_2 = math.expm1(-h) / h + 1
        if h_2 is not None:
            r0, r1 = h_1 / h, h_2 / h
            d1_0 = (den - den_1) / r0
            d1_1 = (den_1 - den_2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            d2 = d2_scale * (d1_0 - d1_1) / (r0 + r1)
            phi_3 = phi_2 / h - 0.5
            x = x + phi_2 * d1 - phi_3 * d2
        elif h_1 is not None:
            x = x + phi_2 * ((den - den_1) / (h_1 / h))
        den_1, den_2 = den, den_1
        h_1, h_2 = h, h_1
    return x


def _unipc_coeffs(rks: list[float], h: float, variant: str) -> tuple[np.ndarray, np.ndarray, float]:
    """UniPC's R matrix and b vector for predictor/corrector weights (data prediction)."""
    order = len(rks)
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else math.expm1(hh)
    r_rows, b = [], []
    factorial_i = 1
    for i in range(1, order + 1):
        r_rows.append([rk ** (i - 1) for rk in rks])
        b.append(h_phi_k * factorial_i / b_h)
        factorial_i *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial_i
    return np.array(r_rows), np.array(b), b_h


def unipc(denoise: Denoise, x: X, sigmas: Sequence[float], predictor_order: int = 3, variant: str = "bh1") -> X:
    """UniPC-p (bh1/bh2) with the UniC corrector reusing the next evaluation; no corrector after the last."""
    n = len(sigmas) - 1
    lam = [-math.log(s) for s in sigmas]
    dens = [denoise(x, sigmas[0])]
    for step in range(1, n + 1):
        p = min(predictor_order, step)
        # Lower order at the final steps for short runs only: DPM-Solver's rule (n < 10), so long runs keep
        # the full order. Official UniPC code (lower_order_final) lowers it at the final steps for every n.
        if n < 10:
            p = min(p, n + 1 - step)
        h = lam[step] - lam[step - 1]
        d0 = dens[-1]
        rks = [(lam[step - 1 - k] - lam[step - 1]) / h for k in range(1, p)]
        d1s = [(dens[-1 - k] - d0) / rks[k - 1] for k in range(1, p)]
        r_mat, b, b_h = _unipc_coeffs([*rks, 1.0], h, variant)
        x_base = (sigmas[step] / sigmas[step - 1]) * x + (-math.expm1(-h)) * d0
        if p == 1:
            rhos_p = np.zeros(0)
        elif p == 2:
            rhos_p = np.array([0.5])
        else:
            rhos_p = np.linalg.solve(r_mat[:-1, :-1], b[:-1])
        x = x_base
        for k, d1 in enumerate(d1s):
            x = x - (b_h * rhos_p[k]) * d1
        if step == n:
            break
        den = denoise(x, sigmas[step])
        rhos_c = np.array([0.5]) if p == 1 else np.linalg.solve(r_mat, b)
        x = x_base - (b_h * rhos_c[-1]) * (den - d0)
        for k, d1 in enumerate(d1s):
            x = x - (b_h * rhos_c[k]) * d1
        dens.append(den)
    return x


_AB = {1: [1.0], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}


def ipndm(denoise: Denoise, x: X, sigmas: Sequence[float], max_order: int = 4) -> X:
    """iPNDM: Adams-Bashforth on d = (x - D)/sigma with lower-order warm start (diff-sampler)."""
    ds: list = []
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        ds.append((x - denoise(x, s)) / s)
        coeffs = _AB[min(max_order, len(ds))]
        step = coeffs[0] * ds[-1]
        for k, c in enumerate(coeffs[1:], start=2):
            step = step + c * ds[-k]
        x = x + (s_next - s) * step
    return x


def _lagrange_integrals(nodes: list[float], a: float, b: float) -> list[float]:
    """Integrals over [a, b] of the Lagrange basis polynomials on `nodes`."""
    out = []
    for j, tj in enumerate(nodes):
        poly = np.poly1d([1.0])
        for k, tk in enumerate(nodes):
            if k != j:
                poly = poly * np.poly1d([1.0, -tk]) / (tj - tk)
        integ = poly.integ()
        out.append(float(integ(b) - integ(a)))
    return out


def deis(denoise: Denoise, x: X, sigmas: Sequence[float], max_order: int = 3) -> X:
    """DEIS tAB: exact integral of the Lagrange interpolant of d over sigma (variable step), lower-order warm start."""
    ds: list = []
    for i in range(len(sigmas) - 1):
        ds.append((x - denoise(x, sigmas[i])) / sigmas[i])
        k = min(max_order, len(ds))
        w = _lagrange_integrals([sigmas[i - j] for j in range(k)], sigmas[i], sigmas[i + 1])
        step = w[0] * ds[-1]
        for j in range(1, k):
            step = step + w[j] * ds[-1 - j]
        x = x + step
    return x


# --- registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassicalSolver:
    name: str
    recursion: Recursion
    order: int  # convergence order, measured by tests/test_solvers.py
    min_nfe: int
    description: str
    options: dict = field(default_factory=dict)

    def steps(self, nfe: int) -> int:
        """Steps of the grid that spend exactly `nfe` evaluations."""
        if nfe < self.min_nfe or (self.recursion is heun and nfe % 2 == 0):
            need = f"an odd NFE >= {self.min_nfe}" if self.recursion is heun else f"NFE >= {self.min_nfe}"
            raise S4SError(f"solver {self.name!r} needs {need}, got NFE {nfe}")
        return (nfe + 1) // 2 if self.recursion is heun else nfe

    def run(self, denoise: Denoise, x: X, sigmas: Sequence[float]) -> X:
        """Run the recursion directly (x is the start state x_T = sigmas[0] * noise)."""
        return self.recursion(denoise, x, [float(s) for s in sigmas], **self.options)


SOLVERS: dict[str, ClassicalSolver] = {
    s.name: s
    for s in [
        ClassicalSolver("euler", euler, 1, 1, "Euler in sigma (DDIM)"),
        ClassicalSolver("heun", heun, 2, 3, "EDM Heun, NFE = 2*steps - 1"),
        ClassicalSolver("dpmpp2m", dpmpp2m, 2, 2, "DPM-Solver++(2M)"),
        ClassicalSolver("dpmpp3m", dpmpp3m, 3, 3, "DPM-Solver++(3M), third-order form"),
        ClassicalSolver("dpmpp3m-kd", dpmpp3m, 2, 3, "DPM-Solver++(3M) as in k-diffusion (order 2)", {"d2_scale": 1.0}),
        ClassicalSolver("unipc", unipc, 3, 2, "UniPC-2 bh1 with UniC corrector",
                        {"predictor_order": 2, "variant": "bh1"}),
        ClassicalSolver("unipc-bh2", unipc, 3, 2, "UniPC-2 bh2 with UniC corrector",
                        {"predictor_order": 2, "variant": "bh2"}),
        ClassicalSolver("unipc3", unipc, 4, 3, "UniPC-3 bh1 with UniC corrector",
                        {"predictor_order": 3, "variant": "bh1"}),
        ClassicalSolver("unipc3-bh2", unipc, 4, 3, "UniPC-3 bh2 with UniC corrector",
                        {"predictor_order": 3, "variant": "bh2"}),
        # Order 2, not the spec's 4: constant AB4 weights are fourth order on uniform steps only; on the edm
        # and logsnr grids it converges at order 2, with exact starting values too (docs/solvers.md).
        ClassicalSolver("ipndm", ipndm, 2, 2, "iPNDM (AB4 on d, warm start, diff-sampler)", {"max_order": 4}),
        ClassicalSolver("deis", deis, 3, 3, "DEIS tAB3", {"max_order": 3}),
    ]
}


def get_solver(name: str) -> ClassicalSolver:
    if name not in SOLVERS:
        raise choice_error("solver", name, list(SOLVERS))
    return SOLVERS[name]


def trace_table(recursion: Callable[[Denoise, np.ndarray, Sequence[float]], np.ndarray], nfe: int,
                sigmas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Run a linear recursion on symbolic unit vectors over [x_T, D_0, ..., D_{N-1}] (float64)."""
    rows: list[np.ndarray] = []
    evals: list[float] = []

    def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
        m = len(rows)
        if m >= nfe:
            raise RuntimeError(f"recursion made more than {nfe} evaluations")
        rows.append(np.array(x, dtype=np.float64))
        evals.append(float(sigma))
        e = np.zeros(nfe + 1)
        e[m + 1] = 1.0
        return e

    x_t = np.zeros(nfe + 1)
    x_t[0] = 1.0
    out = recursion(denoise, x_t, sigmas)
    if len(rows) != nfe:
        raise RuntimeError(f"recursion made {len(rows)} evaluations, expected {nfe}")
    return np.stack([*rows, np.asarray(out, dtype=np.float64)]), np.array(evals)


def trace_table_in_space(recursion: Callable[[Denoise, np.ndarray, Sequence[float]], np.ndarray], nfe: int,
                         sigmas: Sequence[float], space: str) -> tuple[np.ndarray, np.ndarray]:
    """`trace_table` with rows in a model space: row m holds c(sigma_m) x_m over [z, D_0, ...], z = c(sigma_0) x_T.

    Row N is at sigmas[-1]. From sigma_0 = inf (flow) the recursion runs with x_T = 0 and the
    noise column is noise_level(sigma_m) / noise_level(sigma_0): every classical solver is exact
    for D = 0, where x_m = (sigma_m / sigma_0) x_T (tests/test_solvers.py checks this on finite grids).
    """
    s0 = float(sigmas[0])

    def at(evals: Sequence[float]) -> list[float]:
        return [*map(float, evals), float(sigmas[-1])]

    if math.isinf(s0):
        def from_zero(d: Denoise, x: np.ndarray, s: Sequence[float]) -> np.ndarray:
            return recursion(d, x * 0.0, s)

        table, evals = trace_table(from_zero, nfe, sigmas)
        table[:, 0] = [noise_level(space, s) / noise_level(space, s0) for s in at(evals)]
    else:
        table, evals = trace_table(recursion, nfe, sigmas)
        table[:, 0] *= np.array([space_scale(space, s) for s in at(evals)]) / space_scale(space, s0)
    table[:, 1:] *= np.array([space_scale(space, s) for s in at(evals)])[:, None]
    if not np.all(np.isfinite(table)):
        raise S4SError("this solver has no finite table from sigma = inf; start flow models with euler or dpmpp2m")
    return table, evals


def make_solver(name: str, nfe: int, schedule: str | Sequence[float] = "edm",
                sigma_min: float = 0.002, sigma_max: float = 80.0, space: str = "ve",
                start_scale: float | None = None) -> SolverTable:
    """The table of a classical solver with exactly `nfe` evaluations on a schedule.

    With `space` other than "ve" the table is in that model space (docs/solvers.md) and an
    explicit grid may end at sigma 0 and start at sigma = inf (a diffusers scheduler's sigmas).
    """
    solver = get_solver(name)
    steps = solver.steps(nfe)
    run = solver.run
    if space == "ve" or isinstance(schedule, str):
        sigmas = make_schedule(schedule, steps, sigma_min, sigma_max)
    else:
        sigmas = validate_sigmas(schedule, "explicit sigmas", zero_end=True, inf_start=space == "flow")
        if sigmas.size != steps + 1:
            raise S4SError(f"explicit sigmas have {sigmas.size} entries; "
                           f"this solver needs {steps + 1} for {steps} steps")
    table, evals = trace_table(run, nfe, sigmas) if space == "ve" else trace_table_in_space(run, nfe, sigmas, space)
    sched = schedule if isinstance(schedule, str) else "explicit"
    # "order" is the convergence order; the recursion's options keep their own names (e.g. predictor_order).
    return SolverTable(table, evals, sigmas, name, {"schedule": sched, "order": solver.order, **solver.options},
                       space, start_scale)
