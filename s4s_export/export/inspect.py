"""`inspect_onnx`: what an exported graph is, from the .onnx file alone (graph IO plus metadata_props)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from ..contract import external_data_path, load_graph_header, onnx_metadata


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _tensor(value: onnx.ValueInfoProto) -> dict:
    """Name, dtype and shape of a tensor; a sequence, map or optional value gives its kind (`sequence`, ...)."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return {"name": value.name, "type": str(kind).removesuffix("_type")}
    try:
        dtype = str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
    except (KeyError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()
    return {"name": value.name, "dtype": dtype, "shape": _dims(value)}


def graph_facts(path: Path, model: onnx.ModelProto) -> dict:
    """Facts of a written graph: opset, IR version, node count, op histogram (most used first), bytes on disk
    (with its external weights) and whether it has external weights. Used by inspect and by the build's stats."""
    data = external_data_path(path)
    ops = Counter(node.op_type for node in model.graph.node)
    return {"opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
            "ir_version": model.ir_version, "nodes": len(model.graph.node),
            "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "bytes": path.stat().st_size + (data.stat().st_size if data.is_file() else 0),
            "external_data": data.is_file()}


def inspect_onnx(path: str | Path) -> dict:
    """Inputs, outputs and graph facts, merged over the s4s-export metadata (NFE, solver, sigmas, provenance, ...).

    External weights are not read. A graph without s4s-export metadata gives the graph facts only.
    """
    path = Path(path)
    model = load_graph_header(path)
    facts = graph_facts(path, model)
    inits = {t.name for t in model.graph.initializer}
    return {
        **onnx_metadata(model),
        "inputs": [_tensor(v) for v in model.graph.input if v.name not in inits],
        "outputs": [_tensor(v) for v in model.graph.output],
        "graph": {"file": str(path),
                  **{k: facts[k] for k in ("bytes", "external_data", "nodes", "opset", "ir_version")},
                  "producer": f"{model.producer_name} {model.producer_version}".strip()},
    }
