"""Optional graph simplification with onnxslim (`pip install onnxslim`), kept only when outputs stay identical.

Measured on the demo-size sampler (docs/export.md): fewer nodes (shape arithmetic of the dynamic
batch, paired Unsqueezes), a slightly smaller file and a faster ONNX Runtime run, with bit-identical
outputs. The build works without it; the result is checked on the verification inputs, in ONNX
Runtime, against the unsimplified graph and dropped unless every output value is equal.
"""

from __future__ import annotations

import numpy as np
import onnx

from .onnx_export import PROTOBUF_LIMIT, quiet
from .trt_ops import unsupported_nodes


def _run(proto: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, f)[0] for f in feeds]


def simplify(proto: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> tuple[onnx.ModelProto, bool, str]:
    """(graph to keep, simplified?, one-line note): onnxslim's graph when installed and output-identical."""
    try:
        import onnxslim
    except ImportError:
        return proto, False, "onnxslim not installed (optional: pip install onnxslim)"
    if proto.ByteSize() > PROTOBUF_LIMIT:
        return proto, False, "skipped: graph over 2 GiB"
    with quiet():
        slim = onnxslim.slim(onnx.ModelProto.FromString(proto.SerializeToString()))
    name = f"onnxslim {onnxslim.__version__}"
    if unsupported_nodes(slim):
        return proto, False, f"{name} introduced operators TensorRT does not parse; kept the unsimplified graph"
    try:
        before, after = _run(proto, feeds), _run(slim, feeds)
    except Exception as e:  # noqa: BLE001 (e.g. no CPU kernels for bf16 graphs: nothing to compare)
        why = str(e).splitlines()[0][:120]
        return proto, False, f"{name} result not checkable in onnxruntime ({why}); kept the unsimplified graph"
    if not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(before, after)):
        return proto, False, f"{name} changed the outputs; kept the unsimplified graph"
    return slim, True, f"{name}: {len(proto.graph.node):,} -> {len(slim.graph.node):,} nodes, outputs identical"
