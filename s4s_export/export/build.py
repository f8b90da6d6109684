"""`build_onnx`: model + solver -> one verified .onnx with its JSON sidecar (the `s4s-export build` pipeline)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..conditioning import set_guidance
from ..contract import (GUIDANCE_KEY, NUM_CLASSES_KEY, ONNX_KEY, SIDECAR_FORMAT, SIDECAR_VERSION, io_description,
                        sidecar_path)
from ..denoiser import Denoiser
from ..errors import S4SError, choice_error
from ..fileio import atomic_write_text
from ..modelref import ModelRef, as_model_ref, check_model, load_model
from ..solver_ref import DEFAULT_NFE, resolve_solver
from ..solverfile import library_versions
from ..solvers import SolverTable
from ..workspace import Workspace
from .graph import OUTPUTS, SamplerGraph, sampler_graph
from .onnx_export import OPSET, OPSET_BF16, compact, export_model, set_metadata
from .onnx_files import move_onnx, save_onnx
from .precision import PRECISIONS
from .trt_ops import TRT_LIST_VERSION, check_trt_ops, uses_float64
from .verify import (DEVIATION_SAMPLES, Check, Verification, check_inputs, checker, compare_runtime, graph_stats,
                     precision_deviation, verification_inputs)

DEFAULT_BATCH = (1, 64)  # dynamic batch 1..64: covers interactive use and Triton's dynamic batching
EXPORT_LIBRARIES = ("onnx", "onnxscript", "onnx_ir", "onnxruntime")  # wrote and verified the graph
# the solver file's provenance entries a sidecar repeats under provenance.learned
LEARNED_KEYS = ("method", "order_cap", "predictor_corrector", "schedule", "teacher", "distance", "validation", "versions",
                "conditioning")


@dataclass
class BuildRequest:
    """What `s4s-export build` asks for; `solver=None` takes the workspace's learned solver for `nfe`."""

    nfe: int | None = None
    model: ModelRef | str | None = None  # None: the workspace's model, or demo with a named solver
    solver: str | None = None
    out: str = "."
    precision: str = "fp32"
    batch: tuple[int, int] = DEFAULT_BATCH
    output: str = "float"
    workdir: str | None = None
    guidance_scale: float = 1.0
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
    if denoiser.info.conditioning == "text":
        raise S4SError(f"latent/text graphs: not yet; {ref.text} is text-conditioned, use its solver file in PyTorch "
                       f"(s4s_export.integrations sample_s4s / S4SScheduler)")
    s = resolve_solver(req.solver, denoiser=denoiser, nfe=req.nfe, schedule=spec.schedule, workspace=ws)
    learned_guidance = s.file_info.get("conditioning", {}).get("guidance_scale")
    if learned_guidance is not None:  # the model-internal guidance the solver was learned with (learn --guidance-scale)
        set_guidance(denoiser, learned_guidance)
    return Resolved(denoiser, s.table, s.provenance, {k: s.file_info[k] for k in LEARNED_KEYS if k in s.file_info})


def output_path(req: BuildRequest, r: Resolved) -> Path:
    """`--out` as a file when it ends in .onnx, else `<out>/<model>-<solver>-nfe<N>-<precision>[-uint8].onnx`
    (`<model>` is the denoiser's own name, e.g. `ffhq-twin` for an architecture twin)."""
    out = Path(req.out)
    if out.suffix == ".onnx":
        return out
    stem = f"{r.model}-{r.solver.name}-nfe{r.solver.nfe}-{req.precision}" + ("-uint8" if req.output == "uint8" else "")
    return out / (re.sub(r"[^A-Za-z0-9._-]+", "_", stem) + ".onnx")


def describe(r: Resolved, req: BuildRequest, opset: int) -> dict:
    """The sidecar document; each top-level key is also one metadata_props entry of the .onnx."""
    info = r.denoiser.info
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
        "precision": req.precision,
        "output": req.output,
        "opset": opset,
        "model": {**r.denoiser.identity_dict(), "num_classes": info.num_classes, "conditioning": info.conditioning,
                  "sigma_min": info.sigma_min, "sigma_max": info.sigma_max, "sigma_data": info.sigma_data},
        "provenance": {"learned": r.learned, "command": req.command, "versions": export_versions()},
    }
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


def build_onnx(req: BuildRequest, log: Callable[[str], None] = lambda _: None) -> BuildResult:
    """Resolve, trace, verify and install; S4SError when a check fails.

    The graph is written and verified in a staging folder beside the output. Only a verified graph
    replaces the output: the old sidecar is removed first, the graph (and its .data) moved into
    place, the new sidecar written last. A graph that fails verification is kept as
    `<stem>.failed.onnx` (weights in `<stem>.failed.onnx.data` if external); an earlier graph and its
    sidecar stay as they were. An interrupt before the install leaves the output folder as it was.
    """
    if req.precision not in PRECISIONS:
        raise choice_error("precision", req.precision, list(PRECISIONS))
    if req.output not in OUTPUTS:
        raise choice_error("output", req.output, OUTPUTS)
    r = resolve(req)
    path = output_path(req, r)
    module = sampler_graph(r.denoiser, r.solver, req.precision, req.output)
    opset = OPSET_BF16 if req.precision == "bf16" else OPSET
    info = r.denoiser.info
    lo, hi = req.batch
    seconds = {}

    log(f"tracing the {r.solver.nfe}-step {r.solver.name} sampler of {r.model} ({req.precision}, "
        f"batch {lo if lo == hi else f'{lo}..{hi}'}, output {req.output}); this takes a while on CPU")
    t = time.perf_counter()
    example = check_inputs(module, info.shape, lo if lo == hi else max(lo, min(2, hi)), info.num_classes,
                           req.guidance_scale)
    proto = export_model(module, example, req.batch, opset)
    seconds["export"] = time.perf_counter() - t
    check_trt_ops(proto)  # before compaction and writing: an unsupported op fails the build with the node name
    double = uses_float64(proto)
    compact(proto)
    doc = describe(r, req, opset)
    set_metadata(proto, doc, f"{r.model}: {r.solver.nfe}-step {r.solver.name} sampler, noise -> images (s4s-export)")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging", dir=path.parent))
    try:
        staged = save_onnx(proto, staging / path.name, req.external_data)
        del proto

        log("verifying")
        t = time.perf_counter()
        input_sets = verification_inputs(module, info.shape, req.batch, info.num_classes, req.guidance_scale)
        stats = graph_stats(staged[0], weights_bytes(r.denoiser))
        trt_detail = f"{len(stats['ops'])} op types, all in the TensorRT {TRT_LIST_VERSION} parser list" + (
            "; float64 tensors run as float32 in TensorRT" if double else "")
        checks = [checker(staged[0]),
                  Check("TensorRT ops", True, trt_detail),
                  compare_runtime(staged[0], module, req.precision, input_sets)]
        if req.precision != "fp32":
            dev = check_inputs(module, info.shape, DEVIATION_SAMPLES, info.num_classes, req.guidance_scale)
            full = sampler_graph(r.denoiser, r.solver, "fp32", "float")
            checks.append(precision_deviation(SamplerGraph(module.sampler, "float"), full, dev, req.precision))
        verification = Verification(checks, stats)
        seconds["verify"] = time.perf_counter() - t
        if not verification.ok:
            failed = move_onnx(staged, path.with_name(path.stem + ".failed.onnx"))[0]
            raise S4SError(f"verification failed ({'; '.join(verification.failures())}); the graph was kept as "
                           f"{failed} for inspection" + (f" and {path} is unchanged" if path.exists() else ""))
        sidecar = sidecar_path(path)
        sidecar.unlink(missing_ok=True)  # never an old sidecar beside the new graph, even if interrupted here
        files = move_onnx(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    doc_file = {**doc, ONNX_KEY: path.name, "verification": verification.to_dict()}
    atomic_write_text(sidecar, json.dumps(doc_file, indent=1) + "\n")
    return BuildResult(path, files, sidecar, doc_file, verification, seconds)
