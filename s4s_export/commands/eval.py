"""`s4s-export eval`: solver error against the teacher or exact reference on held-out noise."""

from __future__ import annotations

import typer

from ..limits import SOLVER_NFE_MAX
from ..outputs import check_output_file
from ..progress import quiet
from ..schedules import parse_schedule
from .common import (
    CheckpointOpt,
    EmbeddingsOpt,
    GuidanceOpt,
    ModelConfigOpt,
    ModelOpt,
    PromptsOpt,
    RandomWeightsOpt,
    check_model_memory,
    console,
    model_and_prompts,
    parse_ints,
    parse_names,
    print_json,
    print_table,
)


def eval_cmd(
    model: ModelOpt = "demo",
    checkpoint: CheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    config: ModelConfigOpt = None,
    prompts: PromptsOpt = None,
    embeddings: EmbeddingsOpt = None,
    guidance_scale: GuidanceOpt = None,
    solver: str = typer.Option("dpmpp3m,unipc,ipndm", "--solver",
                               help="Comma-separated classical solver names and/or solver-file paths (a file is "
                                    "evaluated once, at its own NFE)."),
    nfe: str = typer.Option("5", "--nfe", help="Comma-separated NFEs, e.g. 3,4,5,6,8,10."),
    schedule: str = typer.Option(None, "--schedule", help="edm, logsnr, time-uniform, time-quadratic, or sigmas."),
    samples: int = typer.Option(64, "--samples", min=1, help="Held-out noise samples."),
    batch: int = typer.Option(64, "--batch", min=1, help="Batch size for sampling."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    metric: str = typer.Option("rmse", "--metric",
                               help="Comma-separated: rmse, lpips, fid, fd-digits (those that cannot run here are "
                                    "skipped with the reason)."),
    plot: str = typer.Option(None, "--plot",
                             help="PNG path: quality vs NFE per solver, plus <name>-samples.png, "
                                  "a sample grid at NFE 5 (or the smallest NFE)."),
) -> None:
    """Measure solvers on the model's held-out noise (error vs. teacher, or vs. the exact reference)."""
    ref = model_and_prompts(model, checkpoint, random_weights, config, prompts, embeddings,
                            "eval")  # before torch loads
    nfes = parse_ints(nfe, most=SOLVER_NFE_MAX)
    check_model_memory(ref, samples, "--samples", 4, "evaluate on fewer held-out samples")
    if plot is not None:
        from ..plots import grid_path

        check_output_file(plot, "--plot", (".png",))
        check_output_file(grid_path(plot), "--plot's sample grid", (".png",))
    if json_out:
        quiet()
    from ..evaluate import evaluate
    from ..metrics import parse_metrics

    report = evaluate(ref, parse_names(solver, "--solver"), nfes,
                      None if schedule is None else parse_schedule(schedule), samples, batch,
                      tuple(parse_metrics(metric)), plot, prompts, embeddings, guidance_scale)
    if json_out:
        print_json(report)
        return
    rows = [[r["solver"], r["nfe"], r["schedule"], *(f"{v:.4g}" for v in r["metrics"].values())]
            for r in report["results"]]
    metric_names = list(report["results"][0]["metrics"]) if report["results"] else []
    print_table(f"{report['model']['name']}: {report['samples']} held-out samples",
                ["solver", "nfe", "schedule", *metric_names], rows)
    for name, why in report["skipped_metrics"].items():
        console.print(f"{name}: skipped: {why}", highlight=False, soft_wrap=True)
    if "plots" in report:
        p = report["plots"]
        console.print(f"wrote {p['chart']} and {p['grid']} (rows: {', '.join(p['grid_rows'])}; NFE {p['grid_nfe']})",
                      highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
