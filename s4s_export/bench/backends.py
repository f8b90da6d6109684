"""The timed calls of `s4s-export bench`, per backend: each maker returns {batch: {"sampler": fn, "call": fn}}
or raises S4SError with the reason the backend cannot run here.

- `pytorch`: the module the exporter traces (`export.graph.sampler_graph`: the project's one `Sampler`
  with guidance and the output clamp) run eagerly: the host loop, one denoiser call per evaluation;
- `onnxruntime`: the baked graph, exported into a temporary folder and served by the torch-free
  runtime (`s4s_export.runtime.Sampler`) on ONNX Runtime's CPU provider;
- `tensorrt`: the same graph as a TensorRT engine, where TensorRT and a GPU are present.

The graphs are made by the build pipeline (`export.build.build_onnx`: simplified, verified), so they
are the graphs `s4s-export build` writes. One denoiser call is timed as: in PyTorch, the denoiser
module itself; on ONNX Runtime and TensorRT, the baked graph at NFE 1 (one denoiser evaluation with
the same inputs, outputs and session settings, plus two scaled additions on the image), so both
terms of the overhead ratio pay the same per-run costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..denoiser import Denoiser
from ..export.build import BuildRequest, build_onnx
from ..export.graph import sampler_graph
from ..runtime import Sampler as RuntimeSampler
from ..runtime import build_engine
from ..runtime.tensorrt_build import import_tensorrt
from ..solvers import SolverTable

if TYPE_CHECKING:
    from .run import BenchRequest

GUIDANCE = 1.0  # guidance scale for class-conditional models (the cost does not depend on it)
ONE_CALL = "euler"  # at NFE 1: x_T -> one denoiser call -> output
Inputs = tuple[torch.Tensor, np.ndarray | None]  # noise [B,C,H,W], class labels [B] int64 (conditional models)


def eager_fns(denoiser: Denoiser, table: SolverTable, inputs: dict[int, Inputs]) -> dict[int, dict]:
    """The module the exporter traces (the one Sampler, plus guidance and the output clamp), run eagerly."""
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
    build = BuildRequest(nfe=nfe, model=req.ref, solver=solver, out=str(out), batch=(1, max(2, max_batch)),
                         guidance_scale=GUIDANCE, command="s4s-export bench")
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
    paths = baked_graphs(req, solver, tmp, max(inputs))
    return runtime_fns(paths, inputs, lambda p: RuntimeSampler.load(p, providers=["cpu"], threads=req.threads))


def tensorrt_fns(req: BenchRequest, solver: str, tmp: Path, inputs: dict[int, Inputs]) -> dict[int, dict]:
    import_tensorrt()  # build_engine names a missing GPU or CUDA runtime itself
    top = max(inputs)
    engines = tuple(build_engine(p, batch_range=(1, top, top)) for p in baked_graphs(req, solver, tmp / "trt", top))
    return runtime_fns(engines, inputs, RuntimeSampler.load)
