"""`s4s-export bench`: sampler latency, throughput and overhead per backend, and the cost of learning.

Backends, timed side by side in one process (interleaved rounds, `timing.interleaved_ms`):

- `pytorch`: the module the exporter traces (`export.graph.sampler_graph`: the project's one `Sampler`
  with guidance and the output clamp) run eagerly: the host loop, one denoiser call per evaluation;
- `onnxruntime`: the baked graph, exported into a temporary folder and served by the torch-free
  runtime (`s4s_export.runtime.Sampler`) on ONNX Runtime's CPU provider;
- `tensorrt`: the same graph as a TensorRT engine, where TensorRT and a GPU are present.

The graphs are made by the build pipeline (`export.build.build_onnx`: simplified, verified), so they
are the graphs `s4s-export build` writes. Overhead = sampler time / (NFE x one denoiser call) on
the same backend. One denoiser call is timed as: in PyTorch, the denoiser module itself; on ONNX
Runtime and TensorRT, the baked graph at NFE 1 (one denoiser evaluation with the same inputs,
outputs and session settings, plus two scaled additions on the image), so both terms of the ratio
pay the same per-run costs.

Learning cost comes from the workspace's run record (`s4s-export learn` writes wall time and peak
memory to runs/nfe{N}.json), or, with `learn_samples`, from a short `s4s-export learn` run in a
subprocess (fresh process, so its peak RSS is its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .denoiser import Denoiser
from .errors import S4SError
from .evaluate import solver_tables
from .models import get_model_spec, load_model
from .noise import label_set, noise_set
from .solvers import SolverTable
from .timing import describe_machine, interleaved_ms, machine
from .workspace import Workspace

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")
DEFAULT_SOLVER = "dpmpp3m"
GUIDANCE = 1.0  # guidance scale for class-conditional models (the cost does not depend on it)
ONE_CALL = "euler"  # at NFE 1: x_T -> one denoiser call -> output
Inputs = tuple[torch.Tensor, np.ndarray | None]  # noise [B,C,H,W], class labels [B] int64 (conditional models)


@dataclass(frozen=True)
class BenchRequest:
    model: str = "demo"
    checkpoint: str | None = None
    random_weights: bool = False
    nfe: int = 5
    batches: tuple[int, ...] = (1, 16, 64)
    solver: str | None = None  # classical name or solver file; None: the workspace's learned solver, else dpmpp3m
    threads: int = 1
    repeats: int = 10
    warmup: int = 2
    workdir: str | None = None
    learn_samples: int = 0  # > 0: time a short `s4s-export learn` run with this many teacher pairs
    backends: tuple[str, ...] = BACKENDS


def model_workspace(req: BenchRequest, denoiser: Denoiser) -> tuple[Workspace | None, str]:
    """The workspace (`req.workdir`, default ./s4s-workspace) if it was learned for this model, else (None, why not)."""
    try:
        ws = Workspace.open(req.workdir)
    except S4SError as e:
        return None, str(e)
    if ws.model_record["identity"].get("weights_sha256") != denoiser.identity():
        return None, f"workspace {ws.root} holds solvers for another model ({ws.model_name} with other weights)"
    return ws, ""


def pick_solver(req: BenchRequest, denoiser: Denoiser, ws: Workspace | None) -> tuple[str, SolverTable]:
    """The solver to time: `req.solver`, else the workspace's learned one for the NFE, else dpmpp3m.

    Sampling cost depends on the NFE, not on the table's values, so any solver times the same.
    """
    schedule = get_model_spec(req.model).schedule
    if req.solver is None:
        if ws is not None and ws.solver_path(req.nfe).is_file():
            return solver_tables(str(ws.solver_path(req.nfe)), [req.nfe], schedule, denoiser)[0]
        return solver_tables(DEFAULT_SOLVER, [req.nfe], schedule, denoiser)[0]
    label, table = solver_tables(req.solver, [req.nfe], schedule, denoiser)[0]
    if table.nfe != req.nfe:
        raise S4SError(f"solver file {req.solver} is for NFE {table.nfe}, not --nfe {req.nfe}; pass --nfe {table.nfe}")
    return label, table


# --- backends: each returns {batch: {"sampler": fn, "call": fn}} or raises S4SError(reason) -------------


def eager_fns(denoiser: Denoiser, table: SolverTable, inputs: dict[int, Inputs]) -> dict[int, dict]:
    """The module the exporter traces (the one Sampler, plus guidance and the output clamp), run eagerly."""
    from .export.graph import sampler_graph

    graph = sampler_graph(denoiser, table)
    net = graph.sampler.denoiser
    sigma = float(table.eval_sigmas[len(table.eval_sigmas) // 2])
    fns = {}
    for b, (x, labels) in inputs.items():
        s = torch.full((b,), sigma)
        cond = None if labels is None else (torch.from_numpy(labels), torch.tensor(GUIDANCE))
        args = (x,) if cond is None else (x, *cond)
        fns[b] = {"sampler": (lambda args=args: graph(*args)), "call": (lambda x=x, s=s, c=cond: net(x, s, c))}
    return fns


def export_graph(req: BenchRequest, solver: str, nfe: int, out: Path, max_batch: int) -> Path:
    """The baked fp32 graph as `s4s-export build` makes it (simplified and verified), dynamic batch 1..max_batch."""
    from .export.build import BuildRequest, build_onnx

    build = BuildRequest(nfe=nfe, model=req.model, solver=solver, out=str(out), batch=(1, max(2, max_batch)),
                         checkpoint=req.checkpoint, random_weights=req.random_weights, guidance_scale=GUIDANCE,
                         command="s4s-export bench")
    return build_onnx(build).onnx_path


def baked_graphs(req: BenchRequest, solver: str, tmp: Path, max_batch: int) -> tuple[Path, Path]:
    """The N-NFE graph of `solver` and the 1-NFE graph that times one denoiser call (`ONE_CALL`)."""
    return (export_graph(req, solver, req.nfe, tmp, max_batch), export_graph(req, ONE_CALL, 1, tmp, max_batch))


def runtime_fns(paths: tuple[Path, Path], inputs: dict[int, Inputs], load) -> dict[int, dict]:
    """Timed calls of the runtime's Sampler on the N-NFE and the 1-NFE graph (or engine)."""
    graph, one = load(paths[0]), load(paths[1])
    fns = {}
    for b, (x, labels) in inputs.items():
        kw = {"noise": x.numpy()} | ({} if labels is None else {"class_labels": labels, "guidance_scale": GUIDANCE})
        fns[b] = {"sampler": (lambda kw=kw: graph(**kw)), "call": (lambda kw=kw: one(**kw))}
    return fns


def onnxruntime_fns(req: BenchRequest, solver: str, tmp: Path, inputs: dict[int, Inputs]) -> dict[int, dict]:
    from .runtime import Sampler as RuntimeSampler

    paths = baked_graphs(req, solver, tmp, max(inputs))
    return runtime_fns(paths, inputs, lambda p: RuntimeSampler.load(p, providers=["cpu"], threads=req.threads))


def tensorrt_fns(req: BenchRequest, solver: str, tmp: Path, inputs: dict[int, Inputs]) -> dict[int, dict]:
    from .runtime import Sampler as RuntimeSampler
    from .runtime import build_engine
    from .runtime.tensorrt_build import import_tensorrt

    import_tensorrt()  # build_engine names a missing GPU or CUDA runtime itself
    top = max(inputs)
    engines = tuple(build_engine(p, batch_range=(1, top, top)) for p in baked_graphs(req, solver, tmp / "trt", top))
    return runtime_fns(engines, inputs, RuntimeSampler.load)


# --- learning cost --------------------------------------------------------------------------------------


def learning_cost(req: BenchRequest, ws: Workspace | None, why_not: str = "") -> dict:
    """Wall time and peak memory of learning: the workspace's run record, or a short timed run."""
    if req.learn_samples > 0:
        return short_learn_run(req)
    hint = "or pass --learn-samples N to time a short run"
    if ws is None:
        return {"skipped": f"{why_not}; {hint}"}
    record = ws.report_path(req.nfe)
    if not record.is_file():
        return {"skipped": f"workspace {ws.root} has no run record for {req.model} at NFE {req.nfe} ({record}): run "
                           f"`s4s-export learn --model {req.model} --nfe {req.nfe} --workdir {ws.root}`, {hint}"}
    run = json.loads(record.read_text())
    solver_doc = json.loads(Path(run["solver_file"]).read_text()) if Path(run["solver_file"]).is_file() else {}
    return {"source": str(record), "device": run.get("device"), "wall_s": run["wall_s"], "peak_memory": run["peak_memory"],
            "what": "trainer time (training and validation; teacher generation excluded), from the run record",
            "method": solver_doc.get("method"), "training": solver_doc.get("training"),
            "validation": run.get("validation")}


def short_learn_run(req: BenchRequest) -> dict:
    """`s4s-export learn` (S4S-Alt, 1 alternation, `learn_samples` pairs) in a subprocess and a temporary workspace."""
    samples = req.learn_samples
    args = ["--model", req.model, "--nfe", str(req.nfe), "--samples", str(samples), "--batch", str(min(40, samples)),
            "--alternations", "1", "--val-samples", str(min(200, samples))]
    if req.checkpoint:
        args += ["--checkpoint", req.checkpoint]
    if req.random_weights:
        args.append("--random-weights")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "s4s_export", "learn", *args, "--workdir", tmp, "--json"]
        env = {**os.environ, "S4S_QUIET": "1", "OMP_NUM_THREADS": str(req.threads)}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        total = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise S4SError(f"the timed learn run failed ({last}); run `s4s-export learn {' '.join(args)}` to see why")
    row = json.loads(proc.stdout)["results"][0]
    return {"source": f"s4s-export learn {' '.join(args)}", "device": "cpu", "wall_s": row["wall_s"],
            "wall_s_with_teacher": total, "peak_memory": row["peak_memory"],
            "what": "short run: trainer time (teacher excluded) and the whole command (teacher and start-up included)",
            "method": row["method"], "base_val": row["base_val"], "learned_val": row["learned_val"]}


# --- the benchmark ---------------------------------------------------------------------------------------


def bench(req: BenchRequest) -> dict:
    """Latency per backend and batch (medians, side by side), overhead ratios, and learning cost."""
    unknown = [b for b in req.backends if b not in BACKENDS]
    if unknown:
        raise S4SError(f"unknown backend {unknown[0]!r}; choose from: {', '.join(BACKENDS)}")
    torch.set_num_threads(req.threads)
    denoiser = load_model(req.model, req.checkpoint, req.random_weights)
    ws, why_not = model_workspace(req, denoiser)
    label, table = pick_solver(req, denoiser, ws)
    info = denoiser.info
    inputs = {b: (noise_set(info.shape, b, seed=0), None if not info.num_classes else
                  label_set(info.num_classes, b, seed=0).numpy()) for b in req.batches}
    report = {"machine": machine(req.threads), "request": asdict(req), "model": denoiser.identity_dict(),
              "solver": label, "nfe": req.nfe, "skipped": {}}
    report["learning"] = learning_cost(req, ws, why_not)
    backends: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        makers = {"pytorch": lambda: eager_fns(denoiser, table, inputs),
                  "onnxruntime": lambda: onnxruntime_fns(req, label, Path(tmp), inputs),
                  "tensorrt": lambda: tensorrt_fns(req, label, Path(tmp), inputs)}
        for name in req.backends:
            try:
                backends[name] = makers[name]()
            except S4SError as e:
                report["skipped"][name] = str(e)
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
    report["rows"] = rows
    return report


def markdown(report: dict) -> str:
    """The latency table as Markdown, with the machine, the settings and the learning cost, for docs/benchmarks.md."""
    req = report["request"]
    lines = [f"Model `{report['model']['name']}` (weights {report['model']['weights_sha256'][:12]}), solver "
             f"`{report['solver']}`, NFE {report['nfe']}; {req['threads']} thread(s), median of {req['repeats']} "
             f"interleaved rounds after {req['warmup']} warm-up calls. Machine: {describe_machine(report['machine'])}.",
             "",
             "| backend | batch | ms | call ms | overhead | images/s | vs eager |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        vs = f"{r['vs_eager']:.2f}x" if "vs_eager" in r else "-"
        lines.append(f"| {r['backend']} | {r['batch']} | {r['sampler_ms']:.2f} | {r['call_ms']:.2f} | {r['overhead']:.3f} | "
                     f"{r['images_per_s']:.1f} | {vs} |")
    lines.append("")
    for name, why in report["skipped"].items():
        lines.append(f"- {name}: skipped: {why}")
    learning = report["learning"]
    if "skipped" in learning:
        lines.append(f"- learning: skipped: {learning['skipped']}")
    else:
        lines.append(f"- learning: {learning['wall_s']:.0f} s, peak memory {learning['peak_memory']['bytes'] / 2**20:.0f} MiB "
                     f"({learning['peak_memory']['what']}; {learning['what']}; {learning['source']})")
    return "\n".join(lines) + "\n"
