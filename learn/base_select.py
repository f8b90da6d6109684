"""`--base auto`: score every classical solver on every built-in schedule at one NFE, start from the best.

Every classical solver (`s4s_export.solvers.SOLVERS`) that can spend exactly the NFE is run on every
named schedule (`s4s_export.schedules.SCHEDULES`) over the validation pairs: forward passes only.
Two rankings come out of it:

- the bases, ranked by their score AS INITIALISED: the student's table at iteration 0 after
  `init_from_base`. Where the step form expresses the base exactly that table is the base's own
  (its classical score is used); where it is a least-squares fit (ipndm and deis at order cap 3,
  docs/learning.md) the fitted table is scored, since that, not the classical solver, is where
  training starts. heun cannot be a base (it evaluates twice per step);
- the best classical solver over all of them, heun included: the honest yardstick for the ratios
  that `learn` reports beside the ratio to the base.

`--base NAME[:SCHEDULE]` forces a base; the scores are still computed for the yardstick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from ..errors import S4SError, choice_error
from ..schedules import SCHEDULES, parse_schedule
from ..solvers import SOLVERS, SolverTable, make_solver
from .correction import make_student
from .student import StudentConfig, check_base

log = logging.getLogger("s4s_export.learn")
AUTO = "auto"
Score = Callable[[SolverTable], dict]  # solver -> {"distance": mean validation distance, "rmse": RMSE}


@dataclass(frozen=True)
class BaseRequest:
    """`auto`, or a forced solver with an optional schedule (None: the run's schedule)."""

    solver: str
    schedule: str | tuple[float, ...] | None = None

    @property
    def auto(self) -> bool:
        return self.solver == AUTO

    @classmethod
    def parse(cls, text: str) -> BaseRequest:
        """`auto`, `NAME` or `NAME:SCHEDULE` (a schedule name or comma-separated sigmas)."""
        name, _, sched = text.strip().partition(":")
        if name == AUTO:
            if sched:
                raise S4SError(f"--base auto takes no schedule (got {text!r}); it scores every built-in schedule")
            return cls(AUTO)
        if name not in SOLVERS:
            raise choice_error("base solver", name, [AUTO, *SOLVERS])
        if not sched:
            return cls(name)
        parsed = parse_schedule(sched)
        return cls(name, parsed if isinstance(parsed, str) else tuple(parsed))


@dataclass(frozen=True)
class Candidate:
    """One classical solver on one schedule, scored on the validation pairs."""

    solver: str
    schedule: str
    distance: float  # the classical solver's own table
    rmse: float
    init: str  # "exact", "least-squares" or "not a base"
    init_distance: float | None  # the student's table at iteration 0 (None: not a base)
    init_rmse: float | None

    @property
    def is_base(self) -> bool:
        return self.init_distance is not None


@dataclass(frozen=True)
class BaseSelection:
    """The chosen base, the best classical solver and every candidate's scores at one NFE."""

    nfe: int
    request: str
    chosen: SolverTable
    chosen_schedule: str | list[float]
    best_classical: Candidate  # lowest validation distance
    best_classical_rmse: Candidate  # lowest validation RMSE
    candidates: tuple[Candidate, ...]  # bases by iteration-0 distance, then the others by distance

    def to_dict(self) -> dict:
        def brief(c: Candidate) -> dict:
            return {"solver": c.solver, "schedule": c.schedule, "distance": c.distance, "rmse": c.rmse}

        return {"request": self.request, "nfe": self.nfe, "chosen": {"solver": self.chosen.name,
                "schedule": self.chosen_schedule if isinstance(self.chosen_schedule, str) else "explicit"},
                "best_classical": brief(self.best_classical), "best_classical_rmse": brief(self.best_classical_rmse),
                "ranking": "bases by the validation distance of the student's iteration-0 table, then the others",
                "candidates": [asdict(c) for c in self.candidates]}


def candidate_solvers(nfe: int) -> list[str]:
    """The classical solvers that spend exactly `nfe` evaluations."""
    out = []
    for name, solver in SOLVERS.items():
        try:
            solver.steps(nfe)
        except S4SError:
            continue
        out.append(name)
    return out


def score_candidates(nfe: int, shape: StudentConfig, sigma_min: float, sigma_max: float, score: Score,
                     parameterisation: str = "step", schedules: Sequence[str] = tuple(SCHEDULES)) -> list[Candidate]:
    """Every classical solver on every schedule, scored classical and as initialised, ranked."""
    out = []
    for name in candidate_solvers(nfe):
        for sched in schedules:
            table = make_solver(name, nfe, sched, sigma_min, sigma_max)
            own = score(table)
            try:
                check_base(table)
            except S4SError:
                out.append(Candidate(name, sched, own["distance"], own["rmse"], "not a base", None, None))
                continue
            student, init = make_student(parameterisation, shape, table)
            at0 = own if init.exact else score(student.solver_table(f"{name} as initialised"))
            out.append(Candidate(name, sched, own["distance"], own["rmse"], init.how, at0["distance"], at0["rmse"]))
    bases = sorted((c for c in out if c.is_base), key=lambda c: (c.init_distance, c.solver, c.schedule))
    others = sorted((c for c in out if not c.is_base), key=lambda c: (c.distance, c.solver, c.schedule))
    return bases + others


def select_base(request: BaseRequest, nfe: int, shape: StudentConfig, run_schedule: str | list[float],
                sigma_min: float, sigma_max: float, score: Score, parameterisation: str = "step") -> BaseSelection:
    """The base to start from (the best as initialised for `auto`, else the forced one) and the yardstick."""
    candidates = score_candidates(nfe, shape, sigma_min, sigma_max, score, parameterisation)
    best = min(candidates, key=lambda c: (c.distance, c.solver, c.schedule))
    best_rmse = min(candidates, key=lambda c: (c.rmse, c.solver, c.schedule))
    if request.auto:
        top = candidates[0]
        if not top.is_base:
            raise S4SError(f"no classical solver can be a base at NFE {nfe}")
        name, sched = top.solver, top.schedule
    else:
        name = request.solver
        sched = run_schedule if request.schedule is None else request.schedule
        sched = list(sched) if isinstance(sched, tuple) else sched
    chosen = make_solver(name, nfe, sched, sigma_min, sigma_max)
    check_base(chosen)
    label = "auto" if request.auto else "forced"
    log.info("NFE %d: base %s on %s (%s); best classical %s on %s (validation %.5g)", nfe, name,
             sched if isinstance(sched, str) else "explicit sigmas", label, best.solver, best.schedule, best.distance)
    return BaseSelection(nfe, AUTO if request.auto else name + ("" if request.schedule is None else ":" + (
        sched if isinstance(sched, str) else "explicit")), chosen, sched, best, best_rmse,
        tuple(candidates))
