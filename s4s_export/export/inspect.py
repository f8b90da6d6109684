"""`inspect_onnx`: what an exported graph is, from the .onnx file alone (graph IO plus metadata_props)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from ..errors import S4SError


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _tensor(value: onnx.ValueInfoProto) -> dict:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return {"name": value.name, "dtype": str(dtype), "shape": _dims(value)}


def inspect_onnx(path: str | Path) -> dict:
    """Inputs, outputs and graph facts, merged over the s4s-export metadata (NFE, solver, sigmas, provenance, ...).

    External weights are not read. A graph without s4s-export metadata gives the graph facts only.
    """
    path = Path(path)
    if not path.is_file():
        raise S4SError(f"{path} does not exist; build a graph with `s4s-export build`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 (protobuf raises several types for a bad file)
        raise S4SError(f"{path} is not a readable ONNX model ({e})") from None
    meta = {}
    for prop in model.metadata_props:
        try:
            meta[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            meta[prop.key] = prop.value
    data = path.with_name(path.name + ".data")
    size = path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
    inits = {t.name for t in model.graph.initializer}
    return {
        **meta,
        "inputs": [_tensor(v) for v in model.graph.input if v.name not in inits],
        "outputs": [_tensor(v) for v in model.graph.output],
        "graph": {"file": str(path), "bytes": size, "external_data": data.is_file(), "nodes": len(model.graph.node),
                  "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
                  "ir_version": model.ir_version,
                  "producer": f"{model.producer_name} {model.producer_version}".strip()},
    }
