#!/usr/bin/env bash
# Wheels the runtime tests inspect without installing them (PyPI only; reruns are no-ops):
#  - TensorRT Python bindings 10.x and 11.x (only the *-bindings wheels are on PyPI; docs/runtime.md)
#    and cuda-bindings: tests/runtime/test_trt_api_surface.py imports them in subprocesses, with stub
#    libnvinfer libraries, to check every TensorRT / CUDA name our code uses;
#  - tritonclient: its model_config_pb2.py is Triton's model-config schema (tests/runtime/test_triton.py).
# They are unpacked into $S4S_CACHE/{trt-bindings/10,trt-bindings/11,cuda-bindings,tritonclient}
# (default S4S_CACHE: ~/.cache/s4s-export).
set -euo pipefail
# The wheels must match the interpreter that runs the tests: the project's venv when there is one.
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
CACHE="${S4S_CACHE:-${S4S_EXPORT_CACHE:-$HOME/.cache/s4s-export}}"  # S4S_EXPORT_CACHE: the deprecated name
fetch() {  # fetch DEST REQUIREMENT...
  local dest="$1"; shift
  [[ -f "$dest/.complete" ]] && return 0
  local tmp; tmp="$(mktemp -d)"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheels" "$@"
  mkdir -p "$tmp/tree"
  for whl in "$tmp"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$whl" "$tmp/tree"; done
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$tmp/tree" "$dest"
  touch "$dest/.complete"
  rm -rf "$tmp"
}
fetch "$CACHE/trt-bindings/10" tensorrt-cu12-bindings==10.16.1.11
fetch "$CACHE/trt-bindings/11" tensorrt-cu13-bindings==11.4.0.106
fetch "$CACHE/cuda-bindings" cuda-bindings==13.5.0 cuda-pathfinder==1.9.1
fetch "$CACHE/tritonclient" tritonclient==2.73.0
echo "$CACHE"
