"""Measure solvers against a teacher (or the exact reference) on held-out noise."""

from __future__ import annotations

from collections.abc import Sequence

from .denoiser import Denoiser
from .heldout import HeldOut, held_out_set, run_solver
from .metrics import MetricSet, rmse
from .modelref import ModelRef, as_model_ref, check_model, load_model
from .noise import VALIDATION_SEED
from .plots import require_matplotlib, write_plots
from .progress import progress
from .solver_ref import resolve_solvers
from .solvers import SolverTable


def score(denoiser: Denoiser, solver: SolverTable, held: HeldOut, batch: int = 64,
          metrics: MetricSet | None = None) -> dict[str, float]:
    """Metrics of one solver on the held-out set (RMSE, or the runnable ones of `metrics`)."""
    out = run_solver(denoiser, solver, held.noise, held.labels, held.dtype, batch)
    if metrics is not None:
        return metrics.score(out, held.target, held.exact)
    key = "rmse_vs_reference" if held.exact else "rmse_vs_teacher"
    return {key: rmse(out, held.target)}


def evaluate(model: ModelRef | str, solvers: Sequence[str], nfes: Sequence[int],
             schedule: str | list[float] | None = None, samples: int = 64, batch: int = 64,
             metrics: tuple[str, ...] = ("rmse",), plot: str | None = None) -> dict:
    """Every (solver, NFE) pair on the model's held-out noise; one JSON-ready report.

    `solvers`: classical names (one result per NFE) and solver files (one result, at the file's NFE);
    `metrics`: names from `metrics.METRICS` (those that cannot run here are listed under `skipped_metrics`);
    `plot`: a PNG path for the quality-vs-NFE chart, with the sample grid beside it (`plots.write_plots`).
    """
    if plot is not None:
        require_matplotlib()
    ref = as_model_ref(model)
    spec = check_model(ref)
    denoiser = load_model(ref)
    resolved = resolve_solvers(solvers, nfes, denoiser=denoiser,
                               schedule=schedule if schedule is not None else spec.schedule)
    held = held_out_set(denoiser, spec.teacher, samples, batch)
    metric_set = MetricSet.create(metrics, denoiser)
    results = [{"solver": s.label, "nfe": s.table.nfe, "schedule": s.table.meta.get("schedule", "-"),
                "metrics": score(denoiser, s.table, held, batch, metric_set)} for s in progress(resolved, "solvers")]
    report = {
        "model": denoiser.identity_dict(),
        "teacher": spec.teacher.to_dict(),
        "samples": samples,
        "noise_seed": VALIDATION_SEED,
        "results": results,
        "skipped_metrics": metric_set.skipped,
    }
    if plot is not None:
        report["plots"] = write_plots(plot, report, denoiser, resolved, held)
    return report
