"""Every GPU measurement of docs/benchmarks.md in one run (at most 8 minutes on one H100, PyTorch only).

    PYTHONPATH=. python benchmarks/gpu.py --out gpu.json     # from the repository root, no install needed
    PYTHONPATH=. python benchmarks/gpu.py --smoke            # tiny sizes, CPU or GPU, seconds

Sections, in this order (the JSON is rewritten after each one, so a cut-off run keeps what it measured):

1. latency: the baked sampler module (the one the exporter traces: NFE 5, dpmpp3m table, as the cost
   does not depend on the table's values) on the EDM CIFAR-10 architecture twin (random weights),
   fp32, at batch 1, 16 and 64: run eagerly (the host loop), and captured as one CUDA graph; and one
   denoiser call, eager.
2. precision: the fp16 network of the exported fp16 graph (`s4s_export.export.precision`: convolutions
   in fp16; normalisation, solver arithmetic and IO in fp32) against fp32 on fixed noise at batch 64:
   max abs and RMSE of the output, and the fp16 latencies.
3. learning: `s4s-export learn` defaults (S4S-Alt, NFE 5) on the twin on the GPU: wall time with
   teacher generation, the trainer's own time, and peak CUDA memory.
4. compiled: torch.compile of the denoiser, the whole loop captured as one CUDA graph, fp32 and fp16,
   at batch 1 and 64, while the time budget lasts (each compilation is timed and reported).

Imports only torch, numpy and this repository's package (learn/ is mapped to s4s_export.learn here,
as pyproject's package-dir does on install).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
START = time.perf_counter()
FULL = dict(model="cifar10", nfe=5, batches=(1, 16, 64), precision_batch=64, compiled_batches=(1, 64), repeats=20,
            warmup=3, learn={})
SMOKE = dict(model="smoke-songunet", nfe=3, batches=(1, 2), precision_batch=2, compiled_batches=(1,), repeats=2,
             warmup=1, learn=dict(samples=8, batch=4, alternations=1, val_samples=4))
SMOKE_NET = dict(img_resolution=8, img_channels=3, model_type="SongUNet", model_channels=16, channel_mult=[1, 2],
                 num_blocks=1, attn_resolutions=[4], dropout=0.0)


def map_source_packages() -> None:
    """Make learn/ importable as s4s_export.learn when the project is not installed (PYTHONPATH=. only)."""
    name = "s4s_export.learn"
    if importlib.util.find_spec(name) is not None:
        return
    import s4s_export

    spec = importlib.util.spec_from_file_location(name, ROOT / "learn" / "__init__.py",
                                                  submodule_search_locations=[str(ROOT / "learn")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    s4s_export.learn = module


def register_smoke_model() -> None:
    """A tiny random-weight SongUNet registered as `smoke-songunet`, so the learn pipeline can load it by name."""
    from s4s_export.models import MODELS, ModelSpec, register
    from s4s_export.networks import build_network

    if "smoke-songunet" in MODELS:
        return

    def load():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build_network("EDMPrecond", **SMOKE_NET, name="smoke-songunet")
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn_like(p), alpha=0.05)
        return net

    register(ModelSpec("smoke-songunet", "tiny random SongUNet for benchmarks/gpu.py --smoke", "3x8x8", "none",
                       load, lambda: True))


class Results:
    """The JSON document, rewritten atomically after every section."""

    def __init__(self, path: Path | None, doc: dict):
        self.path, self.doc = path, doc

    def section(self, name: str, value: dict) -> None:
        self.doc["sections"][name] = value
        self.doc["elapsed_s"] = round(time.perf_counter() - START, 1)
        if self.path is not None:
            from s4s_export.fileio import atomic_write_text

            atomic_write_text(self.path, json.dumps(self.doc, indent=1) + "\n")
        print(f"[{self.doc['elapsed_s']:6.1f} s] {name}: {json.dumps(value)[:400]}", flush=True)



def sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def cuda_graph(fn, static_in: torch.Tensor):
    """Capture `fn(static_in)` as one CUDA graph; returns `run(noise) -> output` (copy in, replay)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up outside capture (allocator, cuDNN autotuning, compilation)
            fn(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_in)

    def run(noise: torch.Tensor) -> torch.Tensor:
        static_in.copy_(noise)
        graph.replay()
        return static_out

    return run


def load(cfg: dict, device: torch.device):
    """The denoiser and the NFE-`nfe` dpmpp3m table (the cost does not depend on the table's values)."""
    from s4s_export.modelref import ModelRef, load_model
    from s4s_export.solvers import make_solver

    random_weights = cfg["model"] != "smoke-songunet"
    denoiser = load_model(ModelRef(cfg["model"], random_weights=random_weights)).to(device)
    info = denoiser.info
    return denoiser, make_solver("dpmpp3m", cfg["nfe"], "logsnr", info.sigma_min, info.sigma_max)


def baked(denoiser, table, precision: str, device: torch.device):
    """The module the exporter traces (`s4s_export.export.graph.sampler_graph`): the one Sampler, float images."""
    from s4s_export.export.graph import sampler_graph

    return sampler_graph(denoiser, table, precision).to(device)


def noise(info, batch: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(batch)
    return torch.randn((batch, *info.shape), generator=g).to(device)


@torch.inference_mode()
def latency(cfg: dict, device: torch.device, denoiser, table, precision: str = "fp32", batches=None,
            compiled: bool = False) -> dict:
    """Median ms per variant and batch; CUDA-graph variants only on CUDA."""
    from s4s_export.timing import interleaved_ms

    graph = baked(denoiser, table, precision, device)
    net = graph.sampler.denoiser
    rows = []
    for b in batches or cfg["batches"]:
        x = noise(denoiser.info, b, device)
        sigma = torch.full((b,), 1.0, device=device)
        fns = {}
        t0 = time.perf_counter()
        if compiled:
            graph.sampler.denoiser = torch.compile(net)
            fns["compiled_cuda_graph"] = (lambda run: lambda: run(x))(cuda_graph(graph, x.clone()))
        else:
            fns["eager_loop"] = lambda: graph(x)
            fns["eager_denoiser_call"] = lambda: net(x, sigma)
            if device.type == "cuda":
                fns["cuda_graph"] = (lambda run: lambda: run(x))(cuda_graph(graph, x.clone()))
        setup_s = time.perf_counter() - t0
        times = interleaved_ms(fns, cfg["repeats"], cfg["warmup"], sync(device))
        row = {"batch": b, "precision": precision, "setup_s": round(setup_s, 1),
               **{k: round(v["median_ms"], 3) for k, v in times.items()}}
        if "eager_denoiser_call" in row:
            row["eager_overhead"] = round(row["eager_loop"] / (cfg["nfe"] * row["eager_denoiser_call"]), 3)
        rows.append(row)
    skipped = {} if device.type == "cuda" else {"cuda_graph": "no CUDA device: CUDA graphs need a GPU"}
    return {"nfe": cfg["nfe"], "rows": rows, "skipped": skipped}


@torch.inference_mode()
def precision(cfg: dict, device: torch.device, denoiser, table) -> dict:
    """fp16 network (the exported fp16 graph's split: solver, IO and normalisation fp32) vs fp32 on fixed noise."""
    x = noise(denoiser.info, cfg["precision_batch"], device)
    ref = baked(denoiser, table, "fp32", device)(x).double()
    half = baked(denoiser, table, "fp16", device)(x).double()
    out = {"batch": cfg["precision_batch"], "max_abs": float((half - ref).abs().max()),
           "rmse": float((half - ref).pow(2).mean().sqrt()), "output_rms": float(ref.pow(2).mean().sqrt())}
    if device.type == "cuda":
        out["latency"] = latency(cfg, device, denoiser, table, "fp16")["rows"]
    return out


def learning(cfg: dict, device: torch.device) -> dict:
    """`s4s-export learn` defaults (or the smoke sizes) at NFE 5 on this device, in a fresh workspace."""
    from s4s_export.learn.config import TrainConfig
    from s4s_export.learn.pipeline import LearnRequest, learn
    from s4s_export.modelref import ModelRef

    random_weights = cfg["model"] != "smoke-songunet"
    config = TrainConfig(**cfg["learn"])
    with tempfile.TemporaryDirectory() as tmp:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        rows = learn(LearnRequest(model=ModelRef(cfg["model"], random_weights=random_weights), nfes=(cfg["nfe"],),
                                  config=config, device=device.type, workdir=tmp))
        total = time.perf_counter() - t0
    row = rows[0]
    out = {"nfe": row["nfe"], "method": row["method"], "distance": row["distance"],
           "config": config.resolved().to_dict(),
           "wall_s_with_teacher": round(total, 1), "trainer_wall_s": round(row["wall_s"], 1),
           "trainer_peak_memory": row["peak_memory"], "base_val": row["base_val"], "learned_val": row["learned_val"],
           "ratio": row["ratio"]}
    if device.type == "cuda":
        out["peak_memory_with_teacher_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return out


def compiled(cfg: dict, device: torch.device, denoiser, table, budget_s: float) -> dict:
    """torch.compile(denoiser) + one CUDA graph for the loop, fp32 then fp16, while the budget lasts."""
    if device.type != "cuda":
        return {"skipped": "no CUDA device: the compiled variant is captured as a CUDA graph"}
    rows, skipped, longest = [], [], 0.0
    for prec in ("fp32", "fp16"):
        for b in cfg["compiled_batches"]:
            left = budget_s - (time.perf_counter() - START)
            if left < 1.5 * longest + 20:
                skipped.append(f"{prec} batch {b}: {left:.0f} s of the budget left")
                continue
            torch._dynamo.reset()
            t0 = time.perf_counter()
            try:
                rows += latency(cfg, device, denoiser, table, prec, batches=[b], compiled=True)["rows"]
            except Exception as e:  # a compiler failure is a result too; the other variants still run
                skipped.append(f"{prec} batch {b}: {type(e).__name__}: {str(e)[:300]}")
            longest = max(longest, time.perf_counter() - t0)
    return {"mode": "torch.compile(denoiser), default mode; the loop captured as one CUDA graph", "rows": rows,
            "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: $OUT/gpu.json when $OUT is set)")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes: checks the script in seconds")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting compilations after this")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; --smoke: 1)")
    args = parser.parse_args(argv)
    out = args.out or (Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else None)
    map_source_packages()
    from s4s_export.timing import machine

    cfg = dict(SMOKE if args.smoke else FULL)
    if args.smoke:
        register_smoke_model()
    threads = args.threads or (1 if args.smoke else None)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cudnn.benchmark = True
    skip = {s for s in args.skip.split(",") if s}
    results = Results(out, {"machine": machine(torch.get_num_threads()),
                            "command": " ".join(["benchmarks/gpu.py", *sys.argv[1:]]), "device": str(device),
                            "model": f"{cfg['model']} (random weights)" if not args.smoke else cfg["model"],
                            "config": {k: v for k, v in cfg.items() if k != "learn"}, "sections": {}})
    denoiser, table = load(cfg, device)
    results.doc["parameters"] = sum(p.numel() for p in denoiser.parameters())
    sections = {"latency": lambda: latency(cfg, device, denoiser, table),
                "precision": lambda: precision(cfg, device, denoiser, table),
                "learning": lambda: learning(cfg, device),
                "compiled": lambda: compiled(cfg, device, denoiser, table, args.budget_s)}
    for name, run in sections.items():
        if name in skip:
            continue
        try:
            value = run()
        except Exception as e:  # one failed section must not cost the others their numbers
            value = {"error": f"{type(e).__name__}: {e}"}
        results.section(name, value)
    if out is None:
        print(json.dumps(results.doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
