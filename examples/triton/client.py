"""Request images from a Triton server serving a repository that make_repository.py wrote.

    python examples/triton/client.py sampler.onnx --model sampler --n 4 --seed 0 --out grid.png
    python examples/triton/client.py sampler.onnx --n 4 --seed 0 --save-request request.npz   # no server needed

The request holds what the Python runtime feeds ONNX Runtime for `Sampler.load(GRAPH)(seed=S, n=N, ...)`: noise
from `seeded_noise` (docs/runtime.md "Noise"), so --seed S gives the same noise bits as `s4s-export sample`, the
C++ runtime and `s4s-export eval`; a class-conditional model without --labels gets `seeded_labels`. GRAPH is the
.onnx the repository was written from (it gives the input shapes and label range). Needs `tritonclient[http]`
to send; --save-request writes the inputs as .npz instead (the runtime's shapes; a batched model gets its
[B] inputs, class_labels and guidance_scale, as [B, 1]: `triton_request`).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler, make_grid, seeded_labels, to_uint8, write_png
from s4s_export.runtime.inputs import prepare_inputs
from s4s_export.runtime.triton import triton_request

_TRITON_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def request_inputs(graph: str, n: int, seed: int, labels: list[int] | None = None,
                   guidance_scale: float | None = None) -> dict[str, np.ndarray]:
    """The checked inputs for n images from `seed`: noise [n,C,H,W] (+ class_labels [n], guidance_scale [n],
    or [] for graphs exported before per-sample scales)."""
    spec = Sampler.load(graph).spec
    if spec.conditional and labels is None:
        if not spec.num_classes:
            raise S4SError(f"{graph} does not record its number of classes; pass --labels")
        labels = seeded_labels(spec.num_classes, n, seed)
    return prepare_inputs(spec, seed=seed, n=n, class_labels=labels, guidance_scale=guidance_scale)


def infer(url: str, model: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The `images` Triton returns for these inputs."""
    try:
        import tritonclient.http as http
    except ModuleNotFoundError:
        raise S4SError("sending needs Triton's client: pip install 'tritonclient[http]' "
                       "(or use --save-request)") from None
    requests = []
    for name, array in inputs.items():
        request = http.InferInput(name, list(array.shape), _TRITON_TYPES[array.dtype])
        request.set_data_from_numpy(array)
        requests.append(request)
    return http.InferenceServerClient(url).infer(model, requests).as_numpy("images")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", help="the sampler .onnx the repository was written from")
    parser.add_argument("--url", default="localhost:8000")
    parser.add_argument("--model", default="sampler", help="model name in the repository (<name> or <name>_trt)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", help="class labels, e.g. 0,1,2 (cycled to n); default: seeded labels")
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--save-request", help="write the inputs to this .npz instead of sending them")
    parser.add_argument("--out", default="grid.png")
    args = parser.parse_args()
    try:
        labels = None if args.labels is None else np.resize(np.array(args.labels.split(","), dtype=np.int64), args.n)
        inputs = request_inputs(args.graph, args.n, args.seed, labels, args.guidance_scale)
        if args.save_request:
            np.savez(args.save_request, **inputs)
            print(f"wrote {args.save_request}: {', '.join(f'{k} {list(v.shape)}' for k, v in inputs.items())}")
            return 0
        spec = Sampler.load(args.graph).spec
        write_png(args.out, make_grid(to_uint8(infer(args.url, args.model, triton_request(spec, inputs)))))
    except (S4SError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
