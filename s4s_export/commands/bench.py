"""`s4s-export bench`: sampler latency, throughput and overhead per backend, and learning cost."""

from __future__ import annotations

import os

import typer

from ..progress import quiet
from .common import (
    CheckpointOpt,
    ModelConfigOpt,
    ModelOpt,
    RandomWeightsOpt,
    check_model_memory,
    console,
    graph_nfe,
    model_ref,
    parse_ints,
    parse_names,
    print_json,
    print_table,
)


def bench_cmd(
    model: ModelOpt = "demo",
    checkpoint: CheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    config: ModelConfigOpt = None,
    nfe: int = typer.Option(5, "--nfe", min=1, callback=graph_nfe, help="Denoiser evaluations per sample."),
    batch: str = typer.Option("1,16,64", "--batch", help="Comma-separated batch sizes."),
    solver: str = typer.Option(None, "--solver", help="Classical solver name or solver file (default: the workspace's "
                                                        "learned solver for --nfe, else dpmpp3m; the cost does not "
                                                        "depend on it)."),
    backend: str = typer.Option("pytorch,onnxruntime,tensorrt", "--backend",
                                help="Backends to time (missing ones are skipped with the reason); latent models: "
                                     "onnxruntime only."),
    provider: str = typer.Option(None, "--provider",
                                 help="Latent models: ONNX Runtime provider of both paths, cpu or cuda (default: cuda "
                                      "where this onnxruntime has it, else cpu)."),
    graphs: str = typer.Option(None, "--graphs",
                               help="Latent models: keep the exported graphs in this folder and reuse them when made "
                                    "from the same weights and solver grid (default: a temporary folder)."),
    threads: int = typer.Option(1, "--threads", min=1, max=os.cpu_count() or 1,
                                help="CPU threads for PyTorch and ONNX Runtime (fixed for comparable numbers)."),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Timed rounds per measurement (the median is reported)."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed calls before timing."),
    workdir: str = typer.Option(None, "--workdir",
                                help="Workspace whose learned solver and run record to use (default ./s4s-workspace)."),
    learn_samples: int = typer.Option(0, "--learn-samples", min=0,
                                      help="Time a short `learn` run (S4S-Alt, 1 alternation) with N teacher pairs "
                                           "instead of reading the run record."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    markdown_out: bool = typer.Option(False, "--markdown", help="Print the latency table as Markdown."),
) -> None:
    """Time the PyTorch eager host loop (`pytorch`), the baked graph on ONNX Runtime and TensorRT (where present),
    side by side; on a latent text model (diffusers:PATH), the baked graph against the host-loop pipeline (UNet and
    VAE sessions, scheduler on the host)."""
    ref = model_ref(model, checkpoint, random_weights, config)  # before torch loads: bad input is reported at once
    batches = tuple(parse_ints(batch, "--batch"))
    check_model_memory(ref, max(batches), "--batch", 16, "time smaller batches")
    check_model_memory(ref, learn_samples, "--learn-samples", 4, "time learning on fewer teacher pairs")
    if json_out:
        quiet()
    from ..bench.learning_cost import describe_learning
    from ..bench.report import (
        LATENT_HEADERS,
        LATENT_NOTE,
        latent_cells,
        latent_markdown,
        latent_title,
        markdown,
        vs_eager,
    )
    from ..bench.run import BenchRequest, bench
    from ..timing import describe_machine

    req = BenchRequest(model=ref, nfe=nfe,
                       batches=batches, solver=solver,
                       backends=tuple(parse_names(backend, "--backend")), threads=threads, repeats=repeats,
                       warmup=warmup, workdir=workdir, learn_samples=learn_samples, provider=provider, graphs=graphs)
    report = bench(req)
    if json_out:
        print_json(report)
        return
    if report.get("kind") == "latent":
        if markdown_out:
            print(latent_markdown(report), end="")
            return
        print_table(latent_title(report), LATENT_HEADERS, [latent_cells(r) for r in report["rows"]])
        console.print(f"{LATENT_NOTE}; machine: {describe_machine(report['machine'])}", highlight=False,
                      soft_wrap=True)
        return
    if markdown_out:
        print(markdown(report), end="")
        return
    rows = [[r["backend"], r["batch"], f"{r['sampler_ms']:.2f}", f"{r['call_ms']:.2f}", f"{r['overhead']:.3f}",
             f"{r['images_per_s']:.1f}", vs_eager(r)] for r in report["rows"]]
    print_table(f"{report['model']['name']}: {report['solver']}, NFE {nfe}, {threads} thread(s), median of {repeats}",
                ["backend", "batch", "ms", "call ms", "overhead", "img/s", "vs eager"], rows)
    for name, why in report["skipped"].items():
        console.print(f"{name}: skipped: {why}", highlight=False, soft_wrap=True)
    console.print(describe_learning(report["learning"]), highlight=False, soft_wrap=True)
    console.print("ms: one sampler run; overhead = ms / (NFE x call ms) on the same backend; vs eager: ms / pytorch "
                  f"ms; machine: {describe_machine(report['machine'])}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
