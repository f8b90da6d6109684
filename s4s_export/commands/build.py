"""`s4s-export build`: bake the fixed-NFE sampler (solver constants and guidance included) into one ONNX graph."""

from __future__ import annotations

import shlex
import sys

import typer

from ..errors import S4SError
from ..export.precision_spec import parse_precision
from ..outputs import check_output_file, check_output_folder
from ..progress import quiet
from .common import (
    CheckpointOpt,
    ModelConfigOpt,
    ModelOpt,
    RandomWeightsOpt,
    console,
    graph_nfe,
    guidance_number,
    model_ref,
    print_json,
)


def build_cmd(
    nfe: int = typer.Option(None, "--nfe", min=1, callback=graph_nfe,
                            help="Evaluations (default 5; a solver file has its own)."),
    model: ModelOpt = None,
    solver: str = typer.Option(None, "--solver", help="Solver file (.json) or classical name (dpmpp3m, unipc, ...); "
                                                      "default: the workspace's learned solver for --nfe."),
    out: str = typer.Option(".", "--out", help="Output folder, or a file path ending in .onnx."),
    precision: str = typer.Option("fp32", "--precision",
                                  help="fp32, fp16 or bf16: the network's math (solver and IO stay fp32), or per "
                                       "component: denoiser|unet|transformer=..., decoder|vae=..., "
                                       "text-encoder=... (others fp32), e.g. unet=fp16,vae=fp32."),
    batch: int = typer.Option(None, "--batch", help="Static batch size."),
    batch_range: str = typer.Option(None, "--batch-range", help="Dynamic batch MIN:MAX (default 1:64)."),
    output: str = typer.Option("float", "--output", help="float (NCHW in [-1, 1]) or uint8 (NHWC)."),
    workdir: str = typer.Option(None, "--workdir", help="Workspace folder (default ./s4s-workspace)."),
    checkpoint: CheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    config: ModelConfigOpt = None,
    guidance_scale: float = typer.Option(1.0, "--guidance-scale", callback=guidance_number,
                                         help="Default guidance scale baked into the metadata "
                                              "of class-conditional graphs (fed at run time)."),
    decode: bool = typer.Option(True, "--decode/--no-decode",
                                help="Latent models: decode to images inside the graph (--no-decode: latents out)."),
    text_encoder: bool = typer.Option(False, "--text-encoder",
                                      help="Text models from a diffusers:PATH folder: also build its text encoder "
                                           "graph and tokenizer.json files (prompt -> ids -> embeddings without "
                                           "torch): SD 1.x/2.x, SDXL, SD3."),
    text_length: int = typer.Option(77, "--text-length", min=1,
                                    help="Text models: tokens per prompt, L of prompt_embeds [B, L, D] (CLIP: 77; "
                                         "SD3: 77 + T5's max_sequence_length, 333 as diffusers)."),
    trt: bool = typer.Option(False, "--trt", help="Also build a TensorRT engine (.plan) for the batch range."),
    triton: str = typer.Option(None, "--triton", help="Also write a Triton model repository into this folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the sidecar document as JSON instead of the report."),
) -> None:
    """Export the sampler as one ONNX graph plus a JSON sidecar, verified against PyTorch with ONNX Runtime.

    Without --model: the workspace's model (with --solver unset), else demo.
    """
    if model is None and (checkpoint is not None or random_weights or config is not None):
        raise S4SError("--checkpoint, --random-weights and --config go with --model: pass --model NAME")
    # before torch loads: bad input is reported at once
    ref = None if model is None else model_ref(model, checkpoint, random_weights, config)
    parse_precision(precision)
    if text_encoder and (ref is None or ref.kind != "diffusers"):
        raise S4SError("--text-encoder takes the text encoder from a diffusers pipeline folder: pass "
                       "--model diffusers:PATH")
    check_build_outputs(out, triton)
    if json_out:
        quiet()
    if trt:  # before the export, which takes minutes: a missing TensorRT, cuda-python or GPU is reported at once
        from ..runtime.cuda import gpu_info
        from ..runtime.tensorrt_build import import_tensorrt

        import_tensorrt()
        gpu_info()
    from ..export.build import BuildRequest, build_onnx, parse_batch

    req = BuildRequest(nfe=nfe, model=ref, solver=solver, out=out, precision=precision,
                       batch=parse_batch(batch, batch_range), output=output, workdir=workdir,
                       guidance_scale=guidance_scale, decode=decode, text_length=text_length,
                       text_encoder=ref.target if text_encoder else None,
                       command=shlex.join(["s4s-export", *sys.argv[1:]]))
    log = (lambda _: None) if json_out else (lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True))
    result = build_onnx(req, log)
    lo, hi = req.batch
    if json_out:
        print_json(result.doc)
    else:
        for line in result.verification.lines():
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        console.print(f"wrote {', '.join(map(str, result.files))} and {result.sidecar} "
                      f"(export {result.seconds['export']:.0f} s, verification {result.seconds['verify']:.0f} s)",
                      highlight=False, markup=False, soft_wrap=True)
    engine = None
    if trt:
        from ..runtime.tensorrt_build import build_engine

        engine = build_engine(result.onnx_path, batch_range=(lo, min(max(lo, 4), hi), hi))
        log(f"wrote TensorRT engine {engine}")
    if triton is not None:
        from ..runtime.triton import write_triton_repository

        repo = write_triton_repository(result.onnx_path, triton, engine, max_batch=hi)
        log(f"wrote Triton model repository {repo}")


def check_build_outputs(out: str, triton: str | None) -> None:
    """--out (a folder, or a file ending in .onnx) and --triton (a folder) can be written: checked before the export."""
    if out.endswith(".onnx"):
        check_output_file(out, "--out", (".onnx",))
    else:
        check_output_folder(out, "--out")
    if triton is not None:
        check_output_folder(triton, "--triton")


def register(app: typer.Typer) -> None:
    app.command("build")(build_cmd)
