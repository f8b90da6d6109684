"""Write a Triton Inference Server model repository for a baked sampler (torch-free).

    python examples/triton/make_repository.py sampler.onnx model_repository [--engine sampler.plan]
    docker run --gpus all -p8000:8000 -v $PWD/model_repository:/models \\
        nvcr.io/nvidia/tritonserver:<release>-py3 tritonserver --model-repository=/models

Each config.pbtxt is checked against Triton's model-config schema when tritonclient is installed.
See README.md beside this file for a client request.
"""

from __future__ import annotations

import argparse
import sys

from s4s_export.errors import S4SError
from s4s_export.runtime import write_triton_repository
from s4s_export.runtime.triton import model_config_schema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("repository")
    parser.add_argument("--engine", help="TensorRT plan that build_engine made from this graph (adds <name>_trt)")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--name")
    args = parser.parse_args()
    try:
        repo = write_triton_repository(args.onnx, args.repository, args.engine, name=args.name,
                                       max_batch=args.max_batch)
    except S4SError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    checked = "checked against Triton's model-config schema" if model_config_schema() else \
        "not checked (install tritonclient for Triton's model-config schema)"
    for config in sorted(repo.glob("*/config.pbtxt")):
        print(f"{config} ({checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
