"""A torch-free app over the Python runtime: sample images from a baked sampler and save a PNG grid.

The runtime imports no torch: at run time it needs only numpy and onnxruntime (TensorRT and cuda-python
for a .plan engine). The app prints whether torch got loaded.

    python examples/python_app.py sampler.onnx --n 16 --seed 0 --out grid.png
    python examples/python_app.py sampler.plan --n 64 --labels 0,1,2   # a TensorRT engine, on a GPU
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler, make_grid, to_uint8, write_png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="sampler.onnx or a TensorRT engine (.plan)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", help="class labels for conditional models, e.g. 0,1,2 (cycled to n)")
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--providers", help="onnxruntime providers, e.g. cuda,cpu")
    parser.add_argument("--out", default="grid.png")
    args = parser.parse_args()
    try:
        sampler = Sampler.load(args.model, providers=args.providers.split(",") if args.providers else None)
        labels = None if args.labels is None else np.resize(np.array(args.labels.split(","), dtype=np.int64), args.n)
        start = time.perf_counter()
        images = sampler(seed=args.seed, n=args.n, class_labels=labels, guidance_scale=args.guidance_scale)
        seconds = time.perf_counter() - start
        write_png(args.out, make_grid(to_uint8(images)))
    except (S4SError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = sampler.info
    print(f"{args.model}: NFE {info.get('nfe', '?')}, solver {info.get('solver', '?')}, images {list(images.shape)} "
          f"{images.dtype}; {1e3 * seconds / args.n:.2f} ms/image; wrote {args.out}; "
          f"torch loaded: {'torch' in sys.modules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
