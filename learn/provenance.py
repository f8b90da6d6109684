"""The provenance document of a learned solver file: how the solver was learned, and how well it does."""

from __future__ import annotations

from dataclasses import dataclass

from ..noise import VALIDATION_SEED
from ..solverfile import library_versions
from ..solvers import SolverTable
from ..teacher import TeacherSpec
from .base_select import BaseSelection
from .config import TrainConfig
from .student import InitReport
from .trainer import TrainResult

# TrainConfig fields recorded elsewhere in the document, left out of its "training" entry
_RECORDED_ELSEWHERE = ("seed", "method", "base", "order_cap", "pc", "offsets", "distance", "radius_c", "relax_step")


@dataclass(frozen=True)
class LearnedSolver:
    """One finished training run, as its solver file records it."""

    config: TrainConfig
    base: SolverTable  # the base solver's table at this NFE
    base_schedule: str | list[float]  # the base grid: a schedule name or explicit sigmas
    init: InitReport
    model: dict  # the denoiser's identity_dict()
    teacher: TeacherSpec
    distance: dict  # the distance's info (name and settings)
    radius: float  # the relaxation radius
    num_coefficients: int
    train_samples: int
    val_samples: int
    base_score: dict  # Trainer.validate of the base solver: {"distance", "rmse"}
    learned_score: dict  # Trainer.validate of the learned solver
    result: TrainResult
    selection: BaseSelection  # the base candidates and their scores; the best classical solver

    @property
    def schedule(self) -> str:
        """The learned grid's origin: `learned`, the base schedule's name, or `explicit`."""
        if self.config.learns_times:
            return "learned"
        return self.base_schedule if isinstance(self.base_schedule, str) else "explicit"


def provenance_document(run: LearnedSolver) -> dict:
    """The solver file's provenance: method, base, model, teacher, distance, relaxation, seeds, validation."""
    cfg, base = run.config, run.base
    return {
        "method": cfg.method,
        "nfe": base.nfe,
        "base": {**run.init.to_dict(),
                 "schedule": run.base_schedule if isinstance(run.base_schedule, str) else "explicit",
                 "sigmas": base.sigmas.tolist(), "selection": run.selection.to_dict()},
        "order_cap": cfg.order_cap,
        "predictor_corrector": cfg.pc,
        "schedule": run.schedule,
        "decoupled_offsets": cfg.offsets,
        "model": run.model,
        "teacher": {**run.teacher.to_dict(), "label": run.teacher.label()},
        "distance": run.distance,
        "relaxation": {"radius_constant": cfg.radius_c, "radius": run.radius, "num_coefficients": run.num_coefficients,
                       "formula": "c_r * m^(-5/2) * sqrt(dim)", "first_step_fraction": cfg.relax_step},
        "training": {k: v for k, v in cfg.to_dict().items() if k not in _RECORDED_ELSEWHERE},
        "seeds": {"seed": cfg.seed, "train_noise_seed": cfg.train_noise_seed, "train_samples": run.train_samples,
                  "validation_noise_seed": VALIDATION_SEED, "validation_samples": run.val_samples,
                  "shuffle_seed": cfg.seed},
        "validation": {"distance": run.distance["name"], "samples": run.val_samples, "base": run.base_score["distance"],
                       "learned": run.learned_score["distance"], "base_rmse": run.base_score["rmse"],
                       "learned_rmse": run.learned_score["rmse"], "iteration0": run.result.init_val,
                       "best_epoch": run.result.best_epoch, "epochs": len(cfg.plan()),
                       **_ratios(run.learned_score, run.base_score, run.selection)},
        "parameters": run.result.student.describe(),
        "versions": library_versions(),
    }


def _ratios(learned: dict, base: dict, selection: BaseSelection) -> dict:
    """The learned solver against its base and against the best classical solver (same validation pairs)."""
    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    best, best_rmse = selection.best_classical, selection.best_classical_rmse
    return {"best_classical": f"{best.solver}:{best.schedule}", "best_classical_distance": best.distance,
            "best_classical_rmse_solver": f"{best_rmse.solver}:{best_rmse.schedule}",
            "best_classical_rmse": best_rmse.rmse,
            "ratio_to_base": ratio(learned["distance"], base["distance"]),
            "ratio_to_best_classical": ratio(learned["distance"], best.distance),
            "rmse_ratio_to_base": ratio(learned["rmse"], base["rmse"]),
            "rmse_ratio_to_best_classical": ratio(learned["rmse"], best_rmse.rmse)}
