"""What baking the loop into one graph costs on ONNX Runtime (CPU), and what it saves over PyTorch eager.

    python benchmarks/export_overhead.py [--model demo [--random-weights]] [--nfe 3,5,8] [--batch 1,16] [--threads 1]
                                         [--repeats 20] [--out exported] [--rebuild] [--json]
                                         [--ort-level basic|extended|all] [--no-arena]

For each NFE the graph comes from the build pipeline (`s4s_export.export.build.build_onnx`, dpmpp3m:
the cost does not depend on the table's values), and so does "one denoiser call": the NFE-1 graph
(euler), one denoiser evaluation with the same inputs, outputs and session settings. In one process,
at each batch size, it times

- graph:  the N-step graph in an onnxruntime CPU session,
- calls:  N runs of the 1-step graph in a session with the same settings, timed right before or after
          the graph in each round (order alternating); overhead = median of the per-round ratios
          graph / calls (acceptance: <= 1.05), steadier than a ratio of medians on a shared machine,
- eager:  the module the exporter traces, run by PyTorch (the project's one Sampler: host loop),
          timed against the graph in interleaved rounds; reported as graph / eager.

Graphs already in --out whose batch range covers --batch are reused unless --rebuild.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from s4s_export.commands.common import parse_ints
from s4s_export.export import inspect_onnx
from s4s_export.export.build import BuildRequest, Resolved, build_onnx, output_path, resolve
from s4s_export.export.graph import sampler_graph
from s4s_export.modelref import ModelRef
from s4s_export.timing import describe_machine, interleaved_ms, machine


def graph_file(req: BuildRequest, r: Resolved, rebuild: bool) -> Path:
    """The built graph at its build-pipeline path; built unless one is there whose batch range covers req's."""
    path = output_path(req, r)
    lo, hi = inspect_onnx(path).get("batch_range", (0, 0)) if path.is_file() else (0, 0)
    if rebuild or not lo <= req.batch[0] <= req.batch[1] <= hi:
        print(f"building {path}", file=sys.stderr)
        build_onnx(req)
    return path


def session(path: Path, args: argparse.Namespace):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{args.ort_level.upper()}")
    options.enable_cpu_mem_arena = not args.no_arena
    # idle ORT threads would otherwise spin after each run and steal the cores from the next timed call
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def paired_ratio(graph: Callable[[], object], calls: Callable[[], object], rounds: int, warmup: int) -> dict:
    """Median over rounds of t(graph) / t(calls), the two timed back to back (order alternating each round).

    Adjacent timings see the same machine load, so their ratio is steadier than a ratio of medians.
    """
    for _ in range(warmup):
        graph(), calls()
    ratios, times = [], {"graph": [], "calls": []}
    for i in range(rounds):
        t = {}
        for name, fn in (("graph", graph), ("calls", calls))[:: 1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            fn()
            t[name] = (time.perf_counter() - t0) * 1e3
        ratios.append(t["graph"] / t["calls"])
        for name in t:
            times[name].append(t[name])
    return {"ratio": statistics.median(ratios), "graph_ms": statistics.median(times["graph"]),
            "calls_ms": statistics.median(times["calls"]), "rounds": rounds}


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    nfes, batches = parse_ints(args.nfe), parse_ints(args.batch, "--batch")
    requests = {nfe: BuildRequest(nfe=nfe, model=ModelRef(args.model, random_weights=args.random_weights),
                                  solver="dpmpp3m" if nfe > 1 else "euler", out=args.out, batch=(1, max(batches)))
                for nfe in sorted({1, *nfes})}
    resolved = {nfe: resolve(req) for nfe, req in requests.items()}
    info = resolved[1].denoiser.info
    if info.num_classes:
        raise SystemExit("this benchmark feeds noise only; pick an unconditional model")
    call = session(graph_file(requests[1], resolved[1], args.rebuild), args)
    rows = []
    for nfe in nfes:
        r = resolved[nfe]
        graph = session(graph_file(requests[nfe], r, args.rebuild), args)
        eager = sampler_graph(r.denoiser, r.solver)
        for b in batches:
            x = torch.randn(b, *info.shape, generator=torch.Generator().manual_seed(b))
            feed = {"noise": x.numpy()}
            paired = paired_ratio(lambda: graph.run(None, feed),
                                  lambda: [call.run(None, feed) for _ in range(nfe)], args.repeats, args.warmup)
            with torch.no_grad():
                t = interleaved_ms({"graph": lambda: graph.run(None, feed), "eager": lambda: eager(x)},
                                   args.repeats, args.warmup)
            rows.append({"nfe": nfe, "batch": b, "overhead": paired["ratio"], "graph_ms": paired["graph_ms"],
                         "call_ms": paired["calls_ms"] / nfe, "eager_ms": t["eager"]["median_ms"],
                         "graph_vs_eager": t["graph"]["median_ms"] / t["eager"]["median_ms"],
                         "timings": {"paired": paired, "vs_eager": t}})
    return {"model": resolved[1].denoiser.identity_dict(), "machine": machine(args.threads), "rows": rows,
            "command": shlex.join(["python", "benchmarks/export_overhead.py", *sys.argv[1:]])}


def markdown(report: dict) -> str:
    lines = [f"`{report['command']}`", "", f"{describe_machine(report['machine'])}, "
             f"{report['machine']['threads']} ORT/torch thread(s), model {report['model']['name']}", "",
             "| NFE | batch | baked graph (ORT) | one call (ORT) | overhead = graph / (NFE x call) "
             "| PyTorch eager loop | graph / eager |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['nfe']} | {r['batch']} | {r['graph_ms']:.1f} ms | {r['call_ms']:.2f} ms | "
                     f"{r['overhead']:.3f} | {r['eager_ms']:.1f} ms | {r['graph_vs_eager']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--random-weights", action="store_true", help="a preset's architecture twin (random weights)")
    p.add_argument("--nfe", default="3,5,8")
    p.add_argument("--batch", default="1,16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--ort-level", default="all", choices=["basic", "extended", "all"],
                   help="onnxruntime graph optimisation level (default all, as onnxruntime)")
    p.add_argument("--no-arena", action="store_true", help="onnxruntime sessions without the CPU memory arena")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="exported", help="folder for the graphs (reused when present)")
    p.add_argument("--rebuild", action="store_true", help="rebuild graphs even when present")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    args = p.parse_args()
    report = measure(args)
    print(json.dumps(report, indent=1) if args.json else markdown(report))


if __name__ == "__main__":
    main()
