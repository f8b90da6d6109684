"""Every bad request gives a one-line S4SError naming the problem (table-driven)."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import CHW, NUM_CLASSES, export_tiny

from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler

GOOD = np.zeros((2, *CHW), np.float32)
NAN = GOOD.copy()
NAN[1, 0, 0, 0] = np.nan

# (kind, graph, call kwargs, sampler load kwargs, words the message must contain)
CASES = [
    ("noise rank", "uncond", {"noise": np.zeros(CHW, np.float32)}, {}, ["noise must have shape", "[B, 1, 6, 5]"]),
    ("noise image shape", "uncond", {"noise": np.zeros((2, 1, 5, 6), np.float32)}, {}, ["noise must have shape"]),
    ("noise dtype", "uncond", {"noise": np.zeros((2, *CHW), np.int64)}, {}, ["floating-point", "int64"]),
    ("noise not an array", "uncond", {"noise": [[1.0], [1.0, 2.0]]}, {}, ["noise must be an array"]),
    ("non-finite noise", "uncond", {"noise": NAN}, {}, ["non-finite", "1"]),
    ("empty batch", "uncond", {"noise": np.zeros((0, *CHW), np.float32)}, {}, ["batch size 0"]),
    ("seed and noise", "uncond", {"noise": GOOD, "seed": 1}, {}, ["either noise or seed"]),
    ("n disagrees with noise", "uncond", {"noise": GOOD, "n": 3}, {}, ["n=3", "batch size 2"]),
    ("n not positive", "uncond", {"n": 0}, {}, ["n must be a positive integer"]),
    ("n not an integer", "uncond", {"n": 2.5}, {}, ["n must be a positive integer"]),
    ("negative seed", "uncond", {"seed": -1}, {}, ["seed must be a non-negative integer"]),
    ("labels for an unconditional model", "uncond", {"n": 2, "class_labels": [0, 1]}, {},
     ["unconditional", "class_labels"]),
    ("guidance for an unconditional model", "uncond", {"n": 2, "guidance_scale": 2.0}, {},
     ["unconditional", "guidance_scale"]),
    ("missing labels", "cond", {"n": 2}, {}, ["class-conditional", "pass class_labels", f"[0, {NUM_CLASSES}]"]),
    ("labels out of range", "cond", {"n": 2, "class_labels": [0, NUM_CLASSES + 1]}, {},
     ["out of range", str(NUM_CLASSES + 1)]),
    ("negative labels", "cond", {"n": 2, "class_labels": [-1, 0]}, {}, ["out of range", "-1"]),
    ("labels dtype", "cond", {"n": 2, "class_labels": [0.5, 1.0]}, {}, ["class_labels must be integers", "float64"]),
    ("labels length", "cond", {"n": 2, "class_labels": [0, 1, 2]}, {}, ["shape [2]", "[3]"]),
    ("guidance not a number", "cond", {"n": 2, "class_labels": 0, "guidance_scale": "big"}, {},
     ["guidance_scale must be a number"]),
    ("guidance not finite", "cond", {"n": 2, "class_labels": 0, "guidance_scale": float("inf")}, {},
     ["guidance_scale must be finite"]),
    ("guidance too large", "cond", {"n": 2, "class_labels": 0, "guidance_scale": 1e300}, {},
     ["guidance_scale must be within", "1e+300"]),
    ("per-sample scales of the wrong length", "cond_per_sample",
     {"n": 2, "class_labels": 0, "guidance_scale": [1.0, 2.0, 3.0]}, {},
     ["guidance_scale must be a number or 2 numbers (one per image)", "shape [3]"]),
    ("per-sample scales not numbers", "cond_per_sample",
     {"n": 2, "class_labels": 0, "guidance_scale": ["a", "b"]}, {}, ["guidance_scale must be a number or 2 numbers"]),
    ("a per-sample scale too large", "cond_per_sample",
     {"n": 2, "class_labels": 0, "guidance_scale": [1.0, -1e9]}, {}, ["guidance_scale must be within", "-1e+09"]),
    ("per-sample scales for a graph taking one", "cond", {"n": 2, "class_labels": 0, "guidance_scale": [1.0, 2.0]}, {},
     ["takes one guidance_scale for the whole batch", "re-export"]),
    ("n beyond memory", "uncond", {"n": 10**9}, {}, ["n 1000000000 needs", "more than this machine can hold",
                                                       "use at most"]),
    ("batch below the profile", "fixed2", {"n": 1}, {}, ["below", "minimum batch 2"]),
    ("batch not splittable", "fixed2", {"n": 5}, {}, ["cannot be split", "[2, 2]"]),
]


@pytest.mark.parametrize("kind,graph,kwargs,load,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(graphs, kind, graph, kwargs, load, words):
    sampler = Sampler.load(graphs[graph], **load)
    with pytest.raises(S4SError) as info:
        sampler(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{kind}: {word!r} not in {message!r}"


LOAD_CASES = [
    ("unknown file type", "model.pt", {}, ["unknown model file type", ".pt"]),
    ("missing file", "missing.onnx", {}, ["does not exist"]),
    ("unknown provider", "uncond", {"providers": ["gpu"]}, ["unknown execution provider", "cpu, cuda, tensorrt"]),
    ("provider not in this onnxruntime", "uncond", {"providers": ["cuda", "cpu"]}, ["lacks cuda", "onnxruntime-gpu"]),
    ("max_batch not positive", "uncond", {"max_batch": 0}, ["max_batch must be a positive integer"]),
    ("cuda graph on onnx", "uncond", {"cuda_graph_batch": 4}, ["TensorRT engines"]),
    ("providers for an engine", "engine.plan", {"providers": ["cpu"]}, ["apply to .onnx graphs"]),
    ("path not a path", None, {}, ["path must be a file path", "None"]),
    ("threads not an integer", "uncond", {"threads": "x"}, ["threads must be an integer from 1 to"]),
    ("threads beyond the CPUs", "uncond", {"threads": 2000}, ["threads must be an integer from 1 to", "2000"]),
    ("threads zero", "uncond", {"threads": 0}, ["threads must be an integer"]),
    ("providers not a list", "uncond", {"providers": 3}, ["providers must be a non-empty list"]),
    ("providers empty", "uncond", {"providers": []}, ["providers must be a non-empty list"]),
    ("device_id negative", "uncond", {"device_id": -1}, ["device_id must be a non-negative integer"]),
    ("noise input not float", "int_noise", {}, ["should be floating point", "int64"]),
]


@pytest.mark.parametrize("kind,target,kwargs,words", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_bad_load(graphs, tmp_path, kind, target, kwargs, words):
    import onnxruntime

    providers = kwargs.get("providers")
    if (isinstance(providers, list) and "cuda" in providers
            and "CUDAExecutionProvider" in onnxruntime.get_available_providers()):
        pytest.skip("this onnxruntime has CUDA")
    if target == "int_noise":
        target = export_int_noise(tmp_path / "int_noise.onnx")
    path = None if target is None else graphs.get(target) or tmp_path / target
    with pytest.raises(S4SError) as info:
        Sampler.load(path, **kwargs)
    for word in words:
        assert word in str(info.value), f"{kind}: {word!r} not in {info.value}"


def test_not_a_sampler_graph(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    with pytest.raises(S4SError, match="not an s4s-export sampler graph: inputs x"):
        Sampler.load(tmp_path / "relu.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(S4SError, match="onnxruntime could not load"):
        Sampler.load(tmp_path / "junk.onnx")


@pytest.fixture
def cuda_listed_but_absent(monkeypatch):
    """Our provider check sees CUDA in this onnxruntime; onnxruntime itself has none, so it quietly runs on CPU
    (as it does when a real CUDA provider fails to start)."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    listed = [*onnxruntime.get_available_providers(), "CUDAExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_a_requested_provider_that_does_not_start_is_an_error(graphs, cuda_listed_but_absent):
    with pytest.raises(S4SError) as info:
        Sampler.load(graphs["uncond"], providers=["cuda", "cpu"])
    message = str(info.value)
    assert ("onnxruntime could not start CUDAExecutionProvider" in message
            and "fell back to CPUExecutionProvider" in message)
    assert "providers=['cpu']" in message and "\n" not in message


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_the_default_providers_fall_back_to_cpu_with_a_warning(graphs, cuda_listed_but_absent, caplog, tmp_path):
    with caplog.at_level("WARNING", logger="s4s_export.runtime.onnxruntime_runner"):
        sampler = Sampler.load(graphs["uncond"])
        (record,) = caplog.records
        assert ("could not start CUDAExecutionProvider" in record.getMessage()
                and "running on CPU" in record.getMessage())
        assert sampler.runner.providers == ["CPUExecutionProvider"] and sampler(seed=0, n=2).shape[0] == 2
        (tmp_path / "junk.onnx").write_bytes(b"not a model")
        with pytest.raises(S4SError, match="onnxruntime could not load"):  # a bad file is an error, not a fallback
            Sampler.load(tmp_path / "junk.onnx")
        assert len(caplog.records) == 1


def export_int_noise(path):
    """A graph whose noise input is int64 (not a float): refused when it loads, not on the first call."""
    import onnx

    export_tiny(path)
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.input[:] = ["noise_f" if i == "noise" else i for i in node.input]
    model.graph.node.insert(0, onnx.helper.make_node("Cast", ["noise"], ["noise_f"], to=onnx.TensorProto.FLOAT))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    onnx.save(model, str(path))
    return path


def test_providers_as_one_string_is_the_comma_separated_list(graphs):
    sampler = Sampler.load(graphs["uncond"], providers="cpu")
    assert sampler.runner.providers == ["CPUExecutionProvider"]
    np.testing.assert_array_equal(sampler(seed=1, n=2), Sampler.load(graphs["uncond"], providers=["cpu"])(seed=1, n=2))
