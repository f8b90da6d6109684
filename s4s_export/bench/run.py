"""`s4s-export bench`: sampler latency, throughput and overhead per backend, and the cost of learning;
on a latent text model, the baked graph against the host-loop pipeline instead (latent.py).

The backends (`bench_backends`) are timed side by side in one process (interleaved rounds,
`timing.interleaved_ms`). Overhead = sampler time / (NFE x one denoiser call) on the same backend.
The learning cost comes from `learning_cost`; `bench_report.markdown` writes the report as Markdown.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..denoiser import Denoiser
from ..errors import S4SError
from ..export.latent_graph import needs_latent_graph
from ..modelref import ModelRef, as_model_ref, check_model, load_model
from ..noise import label_set, noise_set
from ..solver_ref import ResolvedSolver, resolve_solver
from ..timing import interleaved_ms, machine
from ..workspace import Workspace
from .backends import eager_fns, onnxruntime_fns, tensorrt_fns
from .latent import prepare_latent, time_latent
from .learning_cost import learning_cost

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")
DEFAULT_SOLVER = "dpmpp3m"


@dataclass(frozen=True)
class BenchRequest:
    model: ModelRef | str = "demo"
    nfe: int = 5
    batches: tuple[int, ...] = (1, 16, 64)
    solver: str | None = None  # classical name or solver file; None: the workspace's learned solver, else dpmpp3m
    threads: int = 1
    repeats: int = 10
    warmup: int = 2
    workdir: str | None = None
    learn_samples: int = 0  # > 0: time a short `s4s-export learn` run with this many teacher pairs
    backends: tuple[str, ...] = BACKENDS
    provider: str | None = None  # latent models: onnxruntime provider of both paths (None: cuda if present, else cpu)
    graphs: str | None = None  # latent models: folder to keep and reuse the graphs in (None: a temporary folder)

    @property
    def ref(self) -> ModelRef:
        return as_model_ref(self.model)

    def to_dict(self) -> dict:
        """The request as the report records it (the model reference's fields first)."""
        ref = self.ref
        model = {"model": ref.text, "checkpoint": ref.checkpoint, "random_weights": ref.random_weights}
        if ref.config is not None:
            model["config"] = ref.config
        return {**model, **{k: v for k, v in asdict(self).items() if k != "model"}}


def model_workspace(req: BenchRequest, denoiser: Denoiser) -> tuple[Workspace | None, str]:
    """The workspace (`req.workdir`, default ./s4s-workspace) if it was learned for this model, else (None, why not)."""
    try:
        ws = Workspace.open(req.workdir)
    except S4SError as e:
        return None, str(e)
    if ws.model_record["identity"].get("weights_sha256") != denoiser.identity():
        return None, f"workspace {ws.root} holds solvers for another model ({ws.model_name} with other weights)"
    return ws, ""


def pick_solver(req: BenchRequest, denoiser: Denoiser, schedule: str, ws: Workspace | None) -> ResolvedSolver:
    """The solver to time: `req.solver`, else the workspace's learned one for the NFE, else dpmpp3m.

    Sampling cost depends on the NFE, not on the table's values, so any solver times the same.
    """
    text = req.solver
    if text is None and (ws is None or not ws.solver_path(req.nfe).is_file()):
        text = DEFAULT_SOLVER
    return resolve_solver(text, denoiser=denoiser, nfe=req.nfe, schedule=schedule, workspace=ws)


def bench(req: BenchRequest) -> dict:
    """Latency per backend and batch (medians, side by side), overhead ratios, and learning cost."""
    unknown = [b for b in req.backends if b not in BACKENDS]
    if unknown:
        raise S4SError(f"unknown backend {unknown[0]!r}; choose from: {', '.join(BACKENDS)}")
    torch.set_num_threads(req.threads)
    spec = check_model(req.ref)
    denoiser = load_model(req.ref)
    if needs_latent_graph(denoiser):
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
            graphs = prepare_latent(req, denoiser, Path(req.graphs or tmp))
            del denoiser  # the sessions get its memory
            return time_latent(req, graphs)
    if req.provider is not None or req.graphs is not None:
        raise S4SError("--provider and --graphs apply to latent models (the host-loop comparison); drop them")
    ws, why_not = model_workspace(req, denoiser)
    solver = pick_solver(req, denoiser, spec.schedule, ws)
    info = denoiser.info
    inputs = {b: (noise_set(info.shape, b, seed=0), None if not info.num_classes else
                  label_set(info.num_classes, b, seed=0).numpy()) for b in req.batches}
    report = {"machine": machine(req.threads), "request": req.to_dict(), "model": denoiser.identity_dict(),
              "solver": solver.label, "nfe": req.nfe, "skipped": {}}
    report["learning"] = learning_cost(req, ws, why_not)
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        makers = {"pytorch": lambda: eager_fns(denoiser, solver.table, inputs),
                  "onnxruntime": lambda: onnxruntime_fns(req, solver.label, Path(tmp), inputs),
                  "tensorrt": lambda: tensorrt_fns(req, solver.label, Path(tmp), inputs)}
        backends: dict[str, dict[int, dict]] = {}
        for name in req.backends:
            try:
                backends[name] = makers[name]()
            except S4SError as e:
                report["skipped"][name] = str(e)
        report["rows"] = latency_rows(req, backends)
    return report


def latency_rows(req: BenchRequest, backends: dict[str, dict[int, dict]]) -> list[dict]:
    """Per batch, every backend's sampler and single-call functions timed in interleaved rounds; one row each."""
    rows = []
    for b in req.batches:
        fns = {(name, part): fn for name, per in backends.items() for part, fn in per[b].items()}
        times = interleaved_ms({f"{n}/{p}": f for (n, p), f in fns.items()}, req.repeats, req.warmup)
        for name in backends:
            s, c = times[f"{name}/sampler"], times[f"{name}/call"]
            rows.append({"backend": name, "batch": b, "sampler_ms": s["median_ms"], "call_ms": c["median_ms"],
                         "sampler_min_ms": s["min_ms"], "sampler_max_ms": s["max_ms"],
                         "overhead": s["median_ms"] / (req.nfe * c["median_ms"]),
                         "images_per_s": b / s["median_ms"] * 1e3})
        eager = next((r["sampler_ms"] for r in rows if r["batch"] == b and r["backend"] == "pytorch"), None)
        for r in rows:
            if r["batch"] == b and eager:
                r["vs_eager"] = r["sampler_ms"] / eager
    return rows
