"""Overhead of the Python runtime over a bare onnxruntime session, on the same graph and session.

    python benchmarks/runtime_overhead.py [--onnx sampler.onnx] [--threads 1] [--rounds 30] [--calls 20]

Both sides call the same InferenceSession (the runtime's own), batch 1, with the same noise: the bare
side is `session.run(["images"], {"noise": x})`, the runtime side `sampler(noise=x)` (input checks,
batch planning, dispatch). Calls are timed in adjacent pairs (alternating which goes first) so both
see the same machine load; the overhead is the median paired difference over the median bare time.
`python_side_us` is the runtime's own cost per call, timed over a runner that returns at once.
Without a graph file one is made from the core sampler module:
the demo model (random weights of the same architecture when its asset is absent) with a 5-NFE
dpmpp3m solver.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def make_graph(path: Path, nfe: int) -> str:
    """Export Sampler(demo denoiser, dpmpp3m) to `path`; returns a description of the graph."""
    import torch

    from s4s_export.modelref import load_model
    from s4s_export.models import MODELS
    from s4s_export.networks import build_network
    from s4s_export.sampler import Sampler
    from s4s_export.solvers import make_solver

    if MODELS["demo"].available():
        net, what = load_model("demo"), "demo model"
    else:  # the demo's architecture (scripts/train_demo.py defaults), random weights: same cost per call
        net = build_network("EDMPrecond", img_resolution=16, img_channels=1, label_dim=0, model_type="SongUNet",
                            model_channels=16, channel_mult=[1, 2, 2], num_blocks=2, attn_resolutions=[],
                            embedding_type="positional", encoder_type="standard", decoder_type="standard",
                            resample_filter=[1, 1]).eval().requires_grad_(False)
        what = "demo architecture (EDMPrecond SongUNet 16x16x1), random weights"
    sampler = Sampler(net, make_solver("dpmpp3m", nfe)).float().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(sampler, (torch.randn(1, 1, 16, 16),), str(path), input_names=["noise"],
                          output_names=["images"], dynamic_axes={"noise": {0: "B"}, "images": {0: "B"}},
                          dynamo=True, external_data=False, verbose=False)
    return f"{what}, dpmpp3m NFE {nfe}, exported with torch.onnx (dynamo)"


def measure(onnx_path: Path, threads: int, rounds: int, calls: int) -> dict:
    from s4s_export.runtime import Sampler

    sampler = Sampler.load(onnx_path, providers=["cpu"], threads=threads)
    session = sampler.runner.session
    x = np.random.default_rng(0).standard_normal((1, *sampler.image_shape), dtype=np.float32)
    feeds = {"noise": x}
    out = [sampler.spec.output.name]
    assert np.array_equal(session.run(out, feeds)[0], sampler(noise=x))

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def bare() -> None:
        session.run(out, feeds)

    def runtime() -> None:
        sampler(noise=x)

    for _ in range(calls):  # warm-up
        bare(), runtime()
    bare_s, diffs = [], []
    for k in range(rounds * calls):  # adjacent pairs share the machine's load; the order alternates
        if k % 2:
            t_runtime, t_bare = timed(runtime), timed(bare)
        else:
            t_bare, t_runtime = timed(bare), timed(runtime)
        bare_s.append(t_bare)
        diffs.append(t_runtime - t_bare)
    bare_median = statistics.median(bare_s)
    return {"pairs": len(diffs), "bare_ms_median": 1e3 * bare_median,
            "runtime_ms_median": 1e3 * statistics.median(b + d for b, d in zip(bare_s, diffs, strict=True)),
            "overhead_pct": 100 * statistics.median(diffs) / bare_median,
            "overhead_pct_iqr": [100 * q / bare_median for q in np.percentile(diffs, [25, 75]).tolist()],
            # standard error of the median difference (normal approximation: 1.2533 sigma / sqrt(n))
            "overhead_pct_se": 100 * 1.2533 * float(np.std(diffs)) / len(diffs) ** 0.5 / bare_median,
            "python_side_us": python_side_us(sampler, x)}


def python_side_us(sampler, x: np.ndarray, calls: int = 5000) -> float:
    """The runtime's own cost per call: the same Sampler code over a runner that returns at once."""
    from s4s_export.runtime import Runner, Sampler

    result = sampler(noise=x)

    class Instant(Runner):
        spec, path = sampler.spec, sampler.path

        def _infer(self, feeds):
            return result

        def _release(self):
            """Nothing to free: the wrapped runner is closed by its owner."""

    instant = Sampler(Instant(), sampler.path)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            instant(noise=x)
        best = min(best, (time.perf_counter() - start) / calls)
    return 1e6 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", type=Path, help="exported sampler graph; made there first when absent "
                        "(default: a temporary file, see the module doc)")
    parser.add_argument("--nfe", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20, help="timed pairs per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, graph = args.onnx or Path(tmp) / "sampler.onnx", str(args.onnx)
        if not path.is_file():
            graph = make_graph(path, args.nfe)
        result = measure(path, args.threads, args.rounds, args.calls)
    import onnxruntime

    print(json.dumps({"graph": graph, "batch": 1, "threads": args.threads, "rounds": args.rounds, "calls": args.calls,
                      "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                      "python": platform.python_version(), "machine": platform.machine(), **result}, indent=1))


if __name__ == "__main__":
    main()
