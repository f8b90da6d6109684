"""What baking the loop into one graph costs on ONNX Runtime (CPU), and what it saves over PyTorch eager.

    python benchmarks/export_overhead.py [--model demo] [--nfe 3,5,8] [--batch 1,16] [--threads 2]
                                         [--repeats 20] [--out exported] [--rebuild] [--json]

For each NFE the graph comes from the build pipeline (`s4s_export.export.build.build_onnx`, dpmpp3m:
the cost does not depend on the table's values), and so does "one denoiser call": the NFE-1 graph
(euler), one denoiser evaluation with the same inputs, outputs and session settings. In one process
and in interleaved rounds (`s4s_export.timing.interleaved_ms`), at each batch size, it times

- graph:  the N-step graph in an onnxruntime CPU session,
- call:   the 1-step graph in a session with the same settings,
- eager:  the module the exporter traces, run by PyTorch (the project's one Sampler: host loop),

and reports overhead = graph / (N x call) (acceptance: <= 1.05) and graph / eager. Graphs already
in --out whose batch range covers --batch are reused unless --rebuild.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from s4s_export.commands.common import parse_ints
from s4s_export.export import inspect_onnx
from s4s_export.export.build import BuildRequest, Resolved, build_onnx, output_path, resolve
from s4s_export.export.graph import sampler_graph
from s4s_export.timing import describe_machine, interleaved_ms, machine


def graph_file(req: BuildRequest, r: Resolved, rebuild: bool) -> Path:
    """The built graph at its build-pipeline path; built unless one is there whose batch range covers req's."""
    path = output_path(req, r)
    lo, hi = inspect_onnx(path).get("batch_range", (0, 0)) if path.is_file() else (0, 0)
    if rebuild or not lo <= req.batch[0] <= req.batch[1] <= hi:
        print(f"building {path}", file=sys.stderr)
        build_onnx(req)
    return path


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    nfes, batches = parse_ints(args.nfe), parse_ints(args.batch, "--batch")
    requests = {nfe: BuildRequest(nfe=nfe, model=args.model, solver="dpmpp3m" if nfe > 1 else "euler", out=args.out,
                                  batch=(1, max(batches))) for nfe in sorted({1, *nfes})}
    resolved = {nfe: resolve(req) for nfe, req in requests.items()}
    info = resolved[1].denoiser.info
    if info.num_classes:
        raise SystemExit("this benchmark feeds noise only; pick an unconditional model")
    call = session(graph_file(requests[1], resolved[1], args.rebuild), args.threads)
    rows = []
    for nfe in nfes:
        r = resolved[nfe]
        graph = session(graph_file(requests[nfe], r, args.rebuild), args.threads)
        eager = sampler_graph(r.denoiser, r.solver)
        for b in batches:
            x = torch.randn(b, *info.shape, generator=torch.Generator().manual_seed(b))
            feed = {"noise": x.numpy()}
            with torch.no_grad():
                t = interleaved_ms({"graph": lambda: graph.run(None, feed), "call": lambda: call.run(None, feed),
                                    "eager": lambda: eager(x)}, args.repeats, args.warmup)
            g, c, e = (t[k]["median_ms"] for k in ("graph", "call", "eager"))
            rows.append({"nfe": nfe, "batch": b, "graph_ms": g, "call_ms": c, "eager_ms": e,
                         "overhead": g / (nfe * c), "graph_vs_eager": g / e, "timings": t})
    return {"model": resolved[1].denoiser.identity_dict(), "machine": machine(args.threads), "rows": rows,
            "command": shlex.join(["python", "benchmarks/export_overhead.py", *sys.argv[1:]])}


def markdown(report: dict) -> str:
    lines = [f"`{report['command']}`", "", f"{describe_machine(report['machine'])}, "
             f"{report['machine']['threads']} ORT/torch threads, model {report['model']['name']}", "",
             "| NFE | batch | baked graph (ORT) | one call (ORT) | overhead = graph / (NFE x call) "
             "| PyTorch eager loop | graph / eager |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['nfe']} | {r['batch']} | {r['graph_ms']:.1f} ms | {r['call_ms']:.2f} ms | "
                     f"{r['overhead']:.3f} | {r['eager_ms']:.1f} ms | {r['graph_vs_eager']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--nfe", default="3,5,8")
    p.add_argument("--batch", default="1,16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="exported", help="folder for the graphs (reused when present)")
    p.add_argument("--rebuild", action="store_true", help="rebuild graphs even when present")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    args = p.parse_args()
    report = measure(args)
    print(json.dumps(report, indent=1) if args.json else markdown(report))


if __name__ == "__main__":
    main()
