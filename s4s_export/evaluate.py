"""Measure solvers against a teacher (or the exact reference) on held-out noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .denoiser import Denoiser
from .errors import choice_error
from .metrics import MetricSet
from .models import get_model_spec, load_model
from .noise import VALIDATION_SEED, label_set, noise_set
from .plots import require_matplotlib, write_plots
from .sampler import Sampler
from .solverfile import load_solver_file
from .solvers import SOLVERS, SolverTable, make_solver
from .teacher import TeacherSpec, run_teacher


@dataclass
class HeldOut:
    """Held-out noise, labels and the teacher's outputs for them."""

    noise: torch.Tensor
    labels: torch.Tensor | None
    target: torch.Tensor
    teacher: TeacherSpec
    exact: bool


def held_out_set(denoiser: Denoiser, teacher: TeacherSpec, samples: int, batch: int = 64) -> HeldOut:
    info = denoiser.info
    noise = noise_set(info.shape, samples, VALIDATION_SEED)
    labels = label_set(info.num_classes, samples, VALIDATION_SEED)
    target = run_teacher(denoiser, teacher, noise, labels, batch, desc="held-out targets")
    return HeldOut(noise, labels, target, teacher, teacher.is_reference)


@torch.no_grad()
def run_solver(denoiser: Denoiser, solver: SolverTable, noise: torch.Tensor, labels: torch.Tensor | None,
               dtype: torch.dtype = torch.float32, batch: int = 64) -> torch.Tensor:
    """Sample with a solver table in batches (float64 for exact-model checks)."""
    sampler = Sampler(denoiser, solver).to(dtype)
    outs = []
    for i in range(0, noise.shape[0], batch):
        c = None if labels is None else labels[i : i + batch]
        outs.append(sampler(noise[i : i + batch].to(dtype), c))
    return torch.cat(outs)


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.sqrt(float((a.double() - b.double()).pow(2).mean()))


def score(denoiser: Denoiser, solver: SolverTable, held: HeldOut, batch: int = 64,
          metrics: MetricSet | None = None) -> dict[str, float]:
    """Metrics of one solver on the held-out set (RMSE, or the runnable ones of `metrics`)."""
    dtype = torch.float64 if held.exact else torch.float32
    out = run_solver(denoiser, solver, held.noise, held.labels, dtype, batch)
    if metrics is not None:
        return metrics.score(out, held.target, held.exact)
    key = "rmse_vs_reference" if held.exact else "rmse_vs_teacher"
    return {key: rmse(out, held.target)}


def solver_tables(name: str, nfes: list[int], schedule: str | list[float], denoiser: Denoiser) -> list[tuple[str, SolverTable]]:
    """(label, table) pairs: a classical name gives one per NFE; a solver file gives its own table once (its own NFE)."""
    if name in SOLVERS:
        info = denoiser.info
        return [(name, make_solver(name, nfe, schedule, info.sigma_min, info.sigma_max)) for nfe in nfes]
    if name.endswith(".json") or Path(name).is_file():
        return [(name, load_solver_file(name, expect_identity=denoiser.identity_dict()).solver)]
    raise choice_error("solver", name, [*SOLVERS, "a solver file path (.json)"])


def evaluate(model: str, solvers: list[str], nfes: list[int], schedule: str | list[float] | None = None,
             samples: int = 64, batch: int = 64, checkpoint: str | None = None, random_weights: bool = False,
             metrics: tuple[str, ...] = ("rmse",), plot: str | None = None) -> dict:
    """Every (solver, NFE) pair on the model's held-out noise; one JSON-ready report.

    `metrics`: names from `metrics.METRICS` (those that cannot run here are listed under `skipped_metrics`);
    `plot`: a PNG path for the quality-vs-NFE chart, with the sample grid beside it (`plots.write_plots`).
    """
    if plot is not None:
        require_matplotlib()
    spec = get_model_spec(model)
    denoiser = load_model(model, checkpoint, random_weights)
    sched = schedule if schedule is not None else spec.schedule
    tables = [t for name in solvers for t in solver_tables(name, nfes, sched, denoiser)]
    held = held_out_set(denoiser, spec.teacher, samples, batch)
    metric_set = MetricSet.create(metrics, denoiser)
    results = [{"solver": label, "nfe": t.nfe, "schedule": t.meta.get("schedule", "-"),
                "metrics": score(denoiser, t, held, batch, metric_set)} for label, t in tables]
    report = {
        "model": denoiser.identity_dict(),
        "teacher": spec.teacher.to_dict(),
        "samples": samples,
        "noise_seed": VALIDATION_SEED,
        "results": results,
        "skipped_metrics": metric_set.skipped,
    }
    if plot is not None:
        report["plots"] = write_plots(plot, report, denoiser, tables, held)
    return report
