"""Epoch time of `s4s-export learn` on 1, 2, ... ranks (docs/learning.md, "Several processes").

    python benchmarks/distributed_epoch.py [--model demo] [--ranks 1,2] [--samples 160] [--batch 40]
                                           [--nfe 4] [--alternations 1] [--device cpu] [--workdir DIR] [--json]

Runs the same learn job (a cheap unipc3:8 teacher, pairs generated once and cached in the shared
workspace before timing) with each number of ranks (`--nproc K` starts them on this host) and reads
the per-epoch wall time (training plus validation, measured on rank 0) from the run report
runs/nfe{N}.json. Each run also checks that its solver file is byte-identical to the 1-rank one.

On GPUs the same job on 8 ranks of one host (NCCL, one GPU per rank from LOCAL_RANK):

    python benchmarks/distributed_epoch.py --device cuda --ranks 1,2,4,8 --samples 1400 --batch 40
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: argparse.Namespace, workdir: Path, nproc: int) -> tuple[float, list[float], bytes]:
    cmd = [sys.executable, "-m", "s4s_export", "learn", "--model", args.model, "--teacher", "unipc3:8:logsnr",
           "--base", "dpmpp3m:logsnr", "--distance", "pseudo-huber", "--samples", str(args.samples),
           "--batch", str(args.batch), "--val-samples", str(args.val_samples), "--nfe", str(args.nfe),
           "--alternations", str(args.alternations), "--device", args.device, "--workdir", str(workdir), "--json"]
    env = {**os.environ, "S4S_QUIET": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd + (["--nproc", str(nproc)] if nproc > 1 else []), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    report = json.loads((workdir / "runs" / f"nfe{args.nfe}.json").read_text())
    return wall, [h["epoch_s"] for h in report["history"]], (workdir / "solvers" / f"nfe{args.nfe}.json").read_bytes()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--samples", type=int, default=160)
    p.add_argument("--val-samples", type=int, default=64)
    p.add_argument("--batch", type=int, default=40)
    p.add_argument("--nfe", type=int, default=4)
    p.add_argument("--alternations", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="s4s-dist-bench-"))
    rows, first = [], None
    for k in (int(x) for x in args.ranks.split(",")):
        wall, epochs, solver = run(args, workdir, k)  # the first run also fills the teacher cache
        if first is None:
            wall, epochs, solver = run(args, workdir, k)
            first = solver
        rows.append({"ranks": k, "epoch_s_median": statistics.median(epochs), "epochs": len(epochs),
                     "job_wall_s": wall, "identical_to_1_rank": solver == first})
    meta = {"model": args.model, "samples": args.samples, "batch": args.batch, "nfe": args.nfe, "device": args.device,
            "cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}
    if args.json:
        print(json.dumps({"settings": meta, "rows": rows}, indent=1))
        return
    print(json.dumps(meta))
    for r in rows:
        print(f"{r['ranks']} rank(s): epoch {r['epoch_s_median']:.2f} s (median of {r['epochs']}), "
              f"job {r['job_wall_s']:.1f} s, solver file identical to 1 rank: {r['identical_to_1_rank']}")


if __name__ == "__main__":
    main()
