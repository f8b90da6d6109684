"""The TensorRT operator check: the kept list, and unsupported ops named with their nodes."""

import onnx
import pytest
from onnx import TensorProto, helper

from s4s_export.errors import S4SError
from s4s_export.export import trt_ops
from s4s_export.export.build import BuildRequest, build_onnx


def test_list_has_the_unet_ops_and_not_the_unsupported_ones():
    ops = trt_ops.supported_ops()
    assert {"Conv", "ConvTranspose", "InstanceNormalization", "GroupNormalization", "Einsum", "Softmax", "Cast",
            "Floor", "Transpose", "MatMul", "Sigmoid"} <= ops
    assert not ops & {"Unique", "Bernoulli", "BitwiseAnd", "SequenceConstruct", "Optional", "DFT", "Col2Im"}
    header = trt_ops.SUPPORTED_OPS_FILE.read_text()
    assert "onnx/onnx-tensorrt" in header and f"TensorRT {trt_ops.TRT_LIST_VERSION}" in header


def tiny_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    branch = helper.make_graph([helper.make_node("Bernoulli", ["x"], ["b"], name="coin_flip")], "then", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu_else")], "else", [],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [4])])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu_ok"),
             helper.make_node("Unique", ["a"], ["u"], name="dedupe_values"),
             helper.make_node("FusedGemm", ["u"], ["v"], name="ms_gemm", domain="com.microsoft"),
             helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=branch, else_branch=other)]
    return helper.make_model(helper.make_graph(nodes, "g", [x, flag], [y]))


def test_unsupported_ops_are_reported_with_node_names():
    model = tiny_model()
    assert sorted(trt_ops.unsupported_nodes(model)) == [
        ("coin_flip", "Bernoulli"), ("dedupe_values", "Unique"), ("ms_gemm", "com.microsoft::FusedGemm")]
    with pytest.raises(S4SError, match=r"dedupe_values \(Unique\)") as e:
        trt_ops.check_trt_ops(model)
    assert "coin_flip (Bernoulli)" in str(e.value) and "relu" not in str(e.value)


def test_build_fails_on_an_unsupported_op_before_writing(monkeypatch, tmp_path):
    ops = trt_ops.supported_ops() - {"Softmax"}
    monkeypatch.setattr(trt_ops, "supported_ops", lambda: ops)
    with pytest.raises(S4SError, match=r"node_\w+ \(Softmax\)"):
        build_onnx(BuildRequest(model="gmm", solver="euler", nfe=1, out=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []
