"""Measure solvers against a teacher (or the exact reference) on held-out noise."""

from __future__ import annotations

from collections.abc import Sequence

from .conditioning import finite_range, set_guidance, with_prompts
from .conditioning import guidance_scale as guidance
from .denoiser import Denoiser
from .heldout import HeldOut, decode, held_out_set, run_solver
from .metrics import MetricSet, rmse
from .modelref import ModelRef, as_model_ref, check_model, load_model
from .noise import VALIDATION_SEED
from .plots import require_matplotlib, write_plots
from .progress import progress
from .prompts import check_prompt_options
from .solver_ref import resolve_solvers
from .solvers import SolverTable


def score(denoiser: Denoiser, solver: SolverTable, held: HeldOut, batch: int = 64,
          metrics: MetricSet | None = None) -> dict[str, float]:
    """Metrics of one solver on the held-out set (RMSE, or the runnable ones of `metrics`)."""
    out = run_solver(denoiser, solver, held.noise, held.labels, held.dtype, batch)
    images = None if held.decoded_target is None else (decode(denoiser, out, batch), held.decoded_target)
    if metrics is not None:
        return metrics.score(out, held.target, held.exact, images)
    key = "rmse_vs_reference" if held.exact else "rmse_vs_teacher"
    result = {key: rmse(out, held.target)}
    if images is not None:
        result["rmse_pixels_vs_teacher"] = rmse(*images)
    return result


def evaluate(model: ModelRef | str, solvers: Sequence[str], nfes: Sequence[int],
             schedule: str | list[float] | None = None, samples: int = 64, batch: int = 64,
             metrics: tuple[str, ...] = ("rmse",), plot: str | None = None, prompts: str | None = None,
             embeddings: str | None = None, guidance_scale: float | None = None) -> dict:
    """Every (solver, NFE) pair on the model's held-out noise; one JSON-ready report.

    `solvers`: classical names (one result per NFE) and solver files (one result, at the file's NFE);
    `metrics`: names from `metrics.METRICS` (those that cannot run here are listed under `skipped_metrics`);
    `plot`: a PNG path for the quality-vs-NFE chart, with the sample grid beside it (`plots.write_plots`);
    `prompts` / `embeddings`: a text model's prompts (the held-out split is used, `conditioning.py`);
    `guidance_scale`: the model-internal guidance (None: the model's default).
    Latent models are scored in latent space and, decoded, in pixel space; grids show decoded images.
    """
    if plot is not None:
        require_matplotlib()
    ref = as_model_ref(model)
    spec = check_model(ref)
    check_prompt_options(spec.conditioning, prompts, embeddings, "eval")
    denoiser = finite_range(load_model(ref))
    if guidance_scale is not None:
        set_guidance(denoiser, guidance_scale)
    denoiser, prompt_record = with_prompts(denoiser, ref, prompts, embeddings, None)
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
    if guidance(denoiser) is not None:
        report["guidance_scale"] = guidance(denoiser)
    if prompt_record:
        report["prompts"] = prompt_record
    if plot is not None:
        report["plots"] = write_plots(plot, report, denoiser, resolved, held)
    return report
