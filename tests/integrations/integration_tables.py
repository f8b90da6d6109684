"""Solver tables for the integration tests: classical ones and a dense 'learned' one."""

from __future__ import annotations

import numpy as np

from s4s_export.solvers import SolverTable, make_solver


def learned_like(base: SolverTable, seed: int = 0) -> SolverTable:
    """A dense lower-triangular table with moved evaluation sigmas, as S4S-Alt writes them.

    Every coefficient differs from the classical base (a perturbation of up to 5%), so each
    entry of the table is exercised, not only the ones a classical recursion fills.
    """
    rng = np.random.default_rng(seed)
    table = np.tril(base.table * (1 + 0.05 * rng.uniform(-1, 1, base.table.shape)))
    for m in range(1, table.shape[0]):  # fill the zeros a recursion leaves below the diagonal
        table[m, 1:m + 1] += np.where(table[m, 1:m + 1] == 0, 0.01 * rng.uniform(-1, 1, m), 0)
    evals = base.eval_sigmas * np.exp(0.05 * rng.uniform(-1, 1, base.nfe))
    evals[0] = base.eval_sigmas[0]
    return SolverTable(table, evals, base.sigmas, "s4s-alt", {"method": "s4s-alt", "base": base.name}, base.space,
                       base.start_scale)


CLASSICAL = [("euler", 4), ("dpmpp2m", 5), ("heun", 5), ("unipc", 4)]


def classical(name: str, nfe: int, sigma_min: float, sigma_max: float, schedule: str = "edm") -> SolverTable:
    return make_solver(name, nfe, schedule, sigma_min, sigma_max)
