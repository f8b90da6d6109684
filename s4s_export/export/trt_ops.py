"""Check a graph's operators against those TensorRT's ONNX parser supports (list: trt_supported_ops.txt)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import onnx

from ..errors import S4SError

SUPPORTED_OPS_FILE = Path(__file__).with_name("trt_supported_ops.txt")
TRT_LIST_VERSION = "10.15"
DEFAULT_DOMAINS = ("", "ai.onnx")


@lru_cache(maxsize=1)
def supported_ops() -> frozenset[str]:
    lines = (line.split("#", 1)[0].strip() for line in SUPPORTED_OPS_FILE.read_text().splitlines())
    return frozenset(line for line in lines if line)


def unsupported_nodes(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(node name, op) for every node TensorRT's parser would reject: unknown ops and non-ONNX domains.

    Nodes inside subgraphs (If/Loop/Scan bodies) and model-local functions are checked too.
    """
    ops = supported_ops()
    local = {(f.domain, f.name) for f in model.functions}  # calls of local functions: their bodies are checked
    bad = []
    for node in _nodes(model):
        if (node.domain, node.op_type) in local:
            continue
        op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in ops:
            bad.append((node.name or f"<unnamed, output {node.output[0] if node.output else '?'}>", op))
    return bad


def check_trt_ops(model: onnx.ModelProto) -> None:
    """S4SError naming the unsupported nodes (the first 10) and their ops, if there are any."""
    bad = unsupported_nodes(model)
    if bad:
        listed = ", ".join(f"{name} ({op})" for name, op in bad[:10])
        listed += f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise S4SError(f"the graph uses operators TensorRT's ONNX parser does not support ({TRT_LIST_VERSION} list, "
                       f"{SUPPORTED_OPS_FILE.name}): {listed}; change the model code that produces them")


def _nodes(model: onnx.ModelProto):
    graphs = [model.graph, *model.functions]
    while graphs:
        g = graphs.pop()
        for node in g.node:
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)


def uses_float64(model: onnx.ModelProto) -> bool:
    """True when the graph holds float64 tensors (TensorRT's parser computes them in float32)."""
    double = onnx.TensorProto.DOUBLE
    if any(t.data_type == double for t in model.graph.initializer):
        return True
    return any(node.op_type == "Cast" and any(a.name == "to" and a.i == double for a in node.attribute)
               for node in _nodes(model))
