#!/usr/bin/env bash
# All GPU measurements of docs/benchmarks.md in one call (at most 8 minutes on one H100, PyTorch only),
# from the repository root without an install. Results: $OUT/gpu.json when $OUT is set, else ./gpu.json.
#   bash benchmarks/gpu.sh [--smoke] [any other benchmarks/gpu.py option]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu.json"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
PYTHONPATH=. S4S_QUIET=1 exec timeout 480 "${PYTHON:-python}" benchmarks/gpu.py --out "$out" "$@"
