"""uint8 NHWC output: the same graph's float output, quantised inside the graph."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto
from test_export_fp32 import BATCH

from s4s_export.export import inspect_onnx


def test_uint8_output_equals_float_output_after_quantisation(built):
    float_graph = built(model="tiny", solver="dpmpp3m", nfe=3, batch=BATCH)
    uint8_graph = built(model="tiny", solver="dpmpp3m", nfe=3, batch=BATCH, output="uint8")
    assert uint8_graph.verification.ok and uint8_graph.onnx_path.name.endswith("-uint8.onnx")
    noise = np.random.default_rng(2).standard_normal((5, 1, 8, 8)).astype(np.float32)
    x = ort.InferenceSession(str(float_graph.onnx_path)).run(None, {"noise": noise})[0]
    u = ort.InferenceSession(str(uint8_graph.onnx_path)).run(None, {"noise": noise})[0]
    assert u.dtype == np.uint8 and u.shape == (5, 8, 8, 1)
    expected = np.floor(x.astype(np.float64) * 127.5 + 128).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    y = x.transpose(0, 2, 3, 1).astype(np.float64) * 127.5 + 128
    at_boundary = np.abs(y - np.round(y)) < 1e-4  # float32 rounding may land on either side of a level
    assert np.array_equal(u[~at_boundary], expected[~at_boundary])
    assert np.abs(u.astype(int) - expected.astype(int)).max() <= 1
    assert len(np.unique(u)) > 20  # a real spread of levels, not a saturated image
    out = inspect_onnx(uint8_graph.onnx_path)["outputs"][0]
    assert out["dtype"] == "uint8" and out["shape"][1:] == [8, 8, 1]


def test_uint8_only_at_the_output(built):
    """TensorRT allows UINT8 only at network IO: the output's Cast is the last node and nothing else is uint8."""
    model = onnx.load(str(built(model="tiny", solver="dpmpp3m", nfe=3, batch=BATCH, output="uint8").onnx_path))
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    producer = next(n for n in g.node if g.output[0].name in n.output)
    assert producer.op_type == "Cast" and [a.i for a in producer.attribute if a.name == "to"] == [TensorProto.UINT8]
    assert producer == g.node[-1] and not any(g.output[0].name in n.input for n in g.node)
    casts_to_uint8 = [n for n in g.node if n.op_type == "Cast" and any(
        a.name == "to" and a.i == TensorProto.UINT8 for a in n.attribute)]
    assert casts_to_uint8 == [producer]
    typed = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info)}
    typed.update({t.name: t.data_type for t in g.initializer})
    assert all(typed.get(x) != TensorProto.UINT8 for n in g.node for x in n.input)  # no node consumes uint8
    assert [v.name for v in g.value_info if v.type.tensor_type.elem_type == TensorProto.UINT8] == []
