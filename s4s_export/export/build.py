"""`build_onnx`: model + solver -> one verified .onnx with its JSON sidecar (the `s4s-export build` pipeline)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..conditioning import set_guidance
from ..contract import (
    COMPONENT_PRECISION_KEY,
    GUIDANCE,
    GUIDANCE_KEY,
    IMAGE_FORMATS,
    IMAGES,
    LABELS,
    NUM_CLASSES_KEY,
    ONNX_KEY,
    PRECISION_KEY,
    PROMPT_EMBEDS,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    TEXT_ENCODER_KEY,
    io_description,
    sidecar_path,
)
from ..denoiser import Denoiser
from ..errors import S4SError, choice_error
from ..fileio import atomic_write_text
from ..modelref import ModelRef, as_model_ref, check_model, load_model
from ..outputs import check_output_file, staging_folder
from ..progress import status
from ..solver_ref import DEFAULT_NFE, resolve_solver
from ..solverfile import library_versions
from ..solvers import SolverTable
from ..workspace import Workspace
from .graph import OUTPUTS, SamplerGraph, sampler_graph
from .latent_graph import DEFAULT_TEXT_LENGTH, LatentSamplerGraph, latent_sampler_graph, needs_latent_graph
from .onnx_export import OPSET, OPSET_BF16, compact, export_model, set_metadata
from .onnx_files import move_onnx, save_onnx
from .precision_spec import DECODER, DENOISER, TEXT_ENCODER, PrecisionSpec, parse_precision
from .text_encoder import build_text_encoder, check_text_length, text_encoder_files
from .trt_ops import TRT_LIST_VERSION, check_trt_ops, uses_float64
from .verify import (
    DEVIATION_SAMPLES,
    Check,
    Verification,
    check_inputs,
    checker,
    compare_runtime,
    graph_stats,
    latent_verification_inputs,
    precision_deviation,
    verification_inputs,
)

DEFAULT_BATCH = (1, 64)  # dynamic batch 1..64: covers interactive use and Triton's dynamic batching
EXPORT_LIBRARIES = ("onnx", "onnxscript", "onnx_ir", "onnxruntime")  # wrote and verified the graph
# the solver file's provenance entries a sidecar repeats under provenance.learned
LEARNED_KEYS = ("method", "order_cap", "predictor_corrector", "schedule", "teacher", "distance", "validation",
                "versions", "conditioning")


@dataclass
class BuildRequest:
    """What `s4s-export build` asks for; `solver=None` takes the workspace's learned solver for `nfe`."""

    nfe: int | None = None
    model: ModelRef | str | None = None  # None: the workspace's model, or demo with a named solver
    solver: str | None = None
    out: str = "."
    precision: str = "fp32"  # --precision: fp32|fp16|bf16 or per component (export/precision_spec.py)
    batch: tuple[int, int] = DEFAULT_BATCH
    output: str = "float"
    workdir: str | None = None
    guidance_scale: float = 1.0
    decode: bool = True  # latent models: decode to images in the graph (False: --no-decode, latents out)
    text_length: int = DEFAULT_TEXT_LENGTH  # text-conditioned models: tokens per prompt (L of [B, L, D])
    text_encoder: str | None = None  # a pipeline folder: also build its text encoder graph (build --text-encoder)
    external_data: bool | None = None  # None: only when the file would pass 2 GiB
    command: str = ""  # recorded in the provenance


@dataclass
class Resolved:
    denoiser: Denoiser
    solver: SolverTable
    source: dict  # where the solver came from
    learned: dict = field(default_factory=dict)  # the solver file's provenance (learned solvers)

    @property
    def model(self) -> str:
        """The denoiser's own name, used in every output: an architecture twin's says so (`ffhq-twin`)."""
        return self.denoiser.info.name


@dataclass
class BuildResult:
    onnx_path: Path
    files: list[Path]
    sidecar: Path
    doc: dict
    verification: Verification
    seconds: dict


def parse_batch(batch: int | None, batch_range: str | None) -> tuple[int, int]:
    """`--batch N` (static) or `--batch-range MIN:MAX` (dynamic) -> (min, max); default DEFAULT_BATCH."""
    if batch is not None and batch_range is not None:
        raise S4SError("pass either --batch N (static) or --batch-range MIN:MAX (dynamic), not both")
    if batch is not None:
        if batch < 1:
            raise S4SError(f"--batch must be a positive integer; got {batch}")
        return batch, batch
    if batch_range is None:
        return DEFAULT_BATCH
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", batch_range)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise S4SError(f"--batch-range takes MIN:MAX with 1 <= MIN <= MAX, e.g. 1:64; got {batch_range!r}")
    return int(m.group(1)), int(m.group(2))


def resolve(req: BuildRequest) -> Resolved:
    """The denoiser and solver table a request names (workspace, solver file or classical solver)."""
    ws = None
    if req.solver is None:
        try:
            ws = Workspace.open(req.workdir)
        except S4SError as e:
            raise S4SError(f"{e}; or name a solver: --solver FILE.json or a classical one (--solver dpmpp3m)") from None
        ws.find_solver(req.nfe or DEFAULT_NFE)  # before the model loads: a missing solver is reported at once
    ref = as_model_ref(req.model) if req.model is not None else ws.model_ref if ws is not None else ModelRef("demo")
    spec = check_model(ref)
    denoiser = load_model(ref)
    s = resolve_solver(req.solver, denoiser=denoiser, nfe=req.nfe, schedule=spec.schedule, workspace=ws)
    learned_guidance = s.file_info.get("conditioning", {}).get("guidance_scale")
    if learned_guidance is not None:  # the model-internal guidance the solver was learned with (learn --guidance-scale)
        set_guidance(denoiser, learned_guidance)
    return Resolved(denoiser, s.table, s.provenance, {k: s.file_info[k] for k in LEARNED_KEYS if k in s.file_info})


def output_path(req: BuildRequest, r: Resolved) -> Path:
    """`--out` as a file when it ends in .onnx, else `<out>/<model>-<solver>-nfe<N>-<precision>[-uint8].onnx`
    (`<model>` is the denoiser's own name, e.g. `ffhq-twin` for an architecture twin; `<precision>` is
    `PrecisionSpec.label`, e.g. `fp16` or `fp16-decoder-fp16`)."""
    out = Path(req.out)
    if out.suffix == ".onnx":
        return out
    stem = f"{r.model}-{r.solver.name}-nfe{r.solver.nfe}-{parse_precision(req.precision).label()}" + (
        "-uint8" if req.output == "uint8" else "")
    if not req.decode and r.denoiser.info.latent:
        stem += "-latents"
    return out / (re.sub(r"[^A-Za-z0-9._-]+", "_", stem) + ".onnx")


def latent_io_description(module: LatentSamplerGraph, batch: tuple[int, int], guidance_scale: float
                          ) -> tuple[list[dict], list[dict]]:
    """The sidecar's `inputs` and `outputs` of a latent/text graph (contract.py names; guidance_scale is [B])."""
    info = module.sampler.denoiser.info
    lo, hi = batch
    b = lo if lo == hi else "batch"
    noise, _ = io_description(info.shape, batch, 0, guidance_scale, "float")
    inputs = list(noise)
    for i in module.inputs:
        entry = {"name": i.name, "dtype": str(i.dtype).removeprefix("torch."), "shape": [b, *i.shape]}
        if i.name == LABELS:
            entry |= {"range": [0, info.num_classes], "null_label": info.num_classes}
        inputs.append(entry)
    if module.guided:
        inputs.append({"name": GUIDANCE, "dtype": "float32", "shape": [b], "default": guidance_scale})
    if module.output == "latent":
        return inputs, [{"name": module.output_name, "dtype": "float32", "shape": [b, *info.shape], "layout": "NCHW"}]
    dtype, layout, value_range = IMAGE_FORMATS[module.output]
    c, h, w = info.decodes_to or info.shape
    shape = [b, h, w, c] if layout == "NHWC" else [b, c, h, w]
    return inputs, [{"name": module.output_name, "dtype": dtype, "shape": shape, "layout": layout,
                     "range": value_range}]


def describe(r: Resolved, req: BuildRequest, opset: int, module: SamplerGraph | LatentSamplerGraph,
             precision: dict[str, str]) -> dict:
    """The sidecar document; each top-level key is also one metadata_props entry of the .onnx. `precision`:
    {component: fp32|fp16|bf16} of the components the build has."""
    info = r.denoiser.info
    if isinstance(module, LatentSamplerGraph):
        inputs, outputs = latent_io_description(module, req.batch, req.guidance_scale)
    else:
        inputs, outputs = io_description(info.shape, req.batch, info.num_classes, req.guidance_scale, req.output)
    doc = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "inputs": inputs,
        "outputs": outputs,
        "batch_range": list(req.batch),
        "nfe": r.solver.nfe,
        "solver": {"name": r.solver.name, "sigmas": r.solver.sigmas.tolist(),
                   "eval_sigmas": r.solver.eval_sigmas.tolist(), "source": r.source},
        PRECISION_KEY: parse_precision(req.precision).label(),
        COMPONENT_PRECISION_KEY: precision,
        "output": module.output,
        "opset": opset,
        "model": {**r.denoiser.identity_dict(), "num_classes": info.num_classes, "conditioning": info.conditioning,
                  "sigma_min": info.sigma_min, "sigma_max": info.sigma_max, "sigma_data": info.sigma_data,
                  **({"space": info.space} if info.space != "ve" else {}),
                  **({"decodes_to": list(info.decodes_to)} if info.latent else {})},
        "provenance": {"learned": r.learned, "command": req.command, "versions": export_versions()},
    }
    if isinstance(module, LatentSamplerGraph) and module.inputs and module.inputs[0].name != LABELS:
        doc["text_length"] = module.inputs[0].shape[0]
    if info.num_classes or (isinstance(module, LatentSamplerGraph) and module.guided):
        if info.num_classes:
            doc[NUM_CLASSES_KEY] = info.num_classes
        doc[GUIDANCE_KEY] = req.guidance_scale
    return doc


def export_versions() -> dict:
    """`library_versions()` plus the ONNX libraries (those importable) that wrote and verified the graph."""
    versions = library_versions()
    for name in EXPORT_LIBRARIES:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    return versions


def weights_bytes(denoiser: Denoiser) -> int:
    return sum(t.numel() * t.element_size() for t in denoiser.state_dict().values())


def precision_components(r: Resolved, req: BuildRequest) -> list[str]:
    """The components a build has: the denoiser, the decoder of a decoding latent graph, the text encoder of
    --text-encoder; a component named in --precision that is not among them -> S4SError."""
    absent = {}
    if not r.denoiser.info.latent or getattr(r.denoiser, "decoder", None) is None:
        absent[DECODER] = f"model {r.model!r} has no latent decoder"
    elif not req.decode:
        absent[DECODER] = "--no-decode leaves the decoder out of the graph"
    if req.text_encoder is None:
        absent[TEXT_ENCODER] = "a text encoder graph is built only with --text-encoder"
    parse_precision(req.precision).check_components(absent)
    return [c for c in (DENOISER, DECODER, TEXT_ENCODER) if c not in absent]


def graph_module(r: Resolved, req: BuildRequest) -> SamplerGraph | LatentSamplerGraph:
    """The module a request traces: export/latent_graph.py for latent and text-conditioned models, else graph.py."""
    spec = parse_precision(req.precision)
    if needs_latent_graph(r.denoiser):
        output = req.output if req.decode or not r.denoiser.info.latent else "latent"
        return latent_sampler_graph(r.denoiser, r.solver, output, req.text_length, spec.denoiser, spec.decoder)
    if not req.decode:
        raise S4SError(f"--no-decode applies to latent models; {r.model!r} samples pixels: drop --no-decode")
    return sampler_graph(r.denoiser, r.solver, spec.denoiser, req.output)


def deviation_check(r: Resolved, req: BuildRequest, module: SamplerGraph | LatentSamplerGraph, precision: str,
                    input_sets: list) -> Check:
    """The half-precision module against the fp32 one in PyTorch (float outputs): DEVIATION_SAMPLES fixed
    samples for pixel graphs, the largest verification input set for latent ones."""
    info = r.denoiser.info
    if isinstance(module, LatentSamplerGraph):
        output = "latent" if module.output == "latent" else "float"
        half = LatentSamplerGraph(module.sampler, module.inputs, module.decoder, output)
        full = latent_sampler_graph(r.denoiser, r.solver, output, req.text_length)
        return precision_deviation(half, full, input_sets[-1], precision)
    dev = check_inputs(module, info.shape, DEVIATION_SAMPLES, info.num_classes, req.guidance_scale)
    full = sampler_graph(r.denoiser, r.solver, "fp32", "float")
    return precision_deviation(SamplerGraph(module.sampler, "float"), full, dev, precision)


def precision_text(spec: PrecisionSpec, present: list[str]) -> str:
    """`fp16` for a pixel graph, `denoiser fp16, decoder fp32` for a latent one."""
    parts = spec.components(present)
    return parts[DENOISER] if len(parts) == 1 else ", ".join(f"{c} {p}" for c, p in parts.items())


def build_onnx(req: BuildRequest, log: Callable[[str], None] = lambda _: None,
               resolved: Resolved | None = None) -> BuildResult:
    """Resolve, trace, verify and install; S4SError when a check fails.

    The graph is written and verified in a staging folder beside the output. Only a verified graph
    replaces the output: the old sidecar is removed first, the graph (and its .data) moved into
    place, the new sidecar written last. A graph that fails verification is kept as
    `<stem>.failed.onnx` (weights in `<stem>.failed.onnx.data` if external); an earlier graph and its
    sidecar stay as they were. An interrupt before the install leaves the output folder as it was.
    `resolved` gives the denoiser and solver directly (instead of the request's model and solver).
    """
    spec = parse_precision(req.precision)
    if req.output not in OUTPUTS:
        raise choice_error("output", req.output, OUTPUTS)
    if req.text_length < 1:
        raise S4SError(f"--text-length must be a positive number of tokens (77 for CLIP); got {req.text_length}")
    r = resolve(req) if resolved is None else resolved
    path = check_output_file(output_path(req, r), "--out", (".onnx",))  # before the export: the name is known now
    present = precision_components(r, req)
    module = graph_module(r, req)
    latent = isinstance(module, LatentSamplerGraph)
    if req.text_encoder is not None and not (latent and module.inputs and module.inputs[0].name == PROMPT_EMBEDS):
        raise S4SError(f"--text-encoder applies to text-conditioned models; {r.model!r} takes no prompt embeddings")
    if req.text_encoder is not None:
        check_text_length(req.text_encoder, req.text_length)
    in_graph = [c for c in present if c != TEXT_ENCODER]
    graph_precision = spec.lowest(in_graph)  # sets the opset and the verification limits
    opset = OPSET_BF16 if graph_precision == "bf16" else OPSET
    info = r.denoiser.info
    lo, hi = req.batch
    seconds = {}

    log(f"tracing the {r.solver.nfe}-step {r.solver.name} sampler of {r.model} ({precision_text(spec, present)}, "
        f"batch {lo if lo == hi else f'{lo}..{hi}'}, output {req.output}); this takes a while on CPU")
    t = time.perf_counter()
    example_batch = lo if lo == hi else max(lo, min(2, hi))
    example = module.example_inputs(example_batch, req.guidance_scale) if latent else \
        check_inputs(module, info.shape, example_batch, info.num_classes, req.guidance_scale)
    with status(f"exporting the {r.solver.nfe}-step sampler to ONNX"):
        proto = export_model(module, example, req.batch, opset, module.output_name if latent else IMAGES)
    seconds["export"] = time.perf_counter() - t
    check_trt_ops(proto)  # before compaction and writing: an unsupported op fails the build with the node name
    double = uses_float64(proto)
    compact(proto)
    doc = describe(r, req, opset, module, spec.components(present))
    what = "latents" if latent and module.output == "latent" else "images"
    set_metadata(proto, doc, f"{r.model}: {r.solver.nfe}-step {r.solver.name} sampler, noise -> {what} (s4s-export)")
    staging = staging_folder(path)  # also removes the staging folders of killed builds
    try:
        staged = save_onnx(proto, staging / path.name, req.external_data)
        del proto

        log("verifying")
        t = time.perf_counter()
        input_sets = latent_verification_inputs(module, req.batch, req.guidance_scale) if latent else \
            verification_inputs(module, info.shape, req.batch, info.num_classes, req.guidance_scale)
        stats = graph_stats(staged[0], weights_bytes(r.denoiser))
        trt_detail = f"{len(stats['ops'])} op types, all in the TensorRT {TRT_LIST_VERSION} parser list" + (
            "; float64 tensors run as float32 in TensorRT" if double else "")
        with status("verifying: ONNX checker"):
            checks = [checker(staged[0]), Check("TensorRT ops", True, trt_detail)]
        with status(f"verifying: ONNX Runtime against PyTorch on {len(input_sets)} input sets"):
            checks.append(compare_runtime(staged[0], module, graph_precision, input_sets))
        if graph_precision != "fp32":
            with status(f"verifying: {graph_precision} against fp32"):
                checks.append(deviation_check(r, req, module, graph_precision, input_sets))
        verification = Verification(checks, stats)
        seconds["verify"] = time.perf_counter() - t
        if not verification.ok:
            failed = move_onnx(staged, path.with_name(path.stem + ".failed.onnx"))[0]
            raise S4SError(f"verification failed ({'; '.join(verification.failures())}); the graph was kept as "
                           f"{failed} for inspection" + (f" and {path} is unchanged" if path.exists() else ""))
        sidecar = sidecar_path(path)
        sidecar.unlink(missing_ok=True)  # never an old sidecar beside the new graph, even if interrupted here
        if req.text_encoder is not None:
            doc[TEXT_ENCODER_KEY] = build_text_encoder(req.text_encoder, path, req.text_length, req.batch, log,
                                                       spec.text_encoder)
        files = move_onnx(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if req.text_encoder is not None:
        files += [path.parent / name for name in text_encoder_files(doc[TEXT_ENCODER_KEY])]
    doc_file = {**doc, ONNX_KEY: path.name, "verification": verification.to_dict()}
    atomic_write_text(sidecar, json.dumps(doc_file, indent=1) + "\n")
    return BuildResult(path, files, sidecar, doc_file, verification, seconds)
