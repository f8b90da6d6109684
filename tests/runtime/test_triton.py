"""Triton model repositories: layout, config.pbtxt contents, and Triton's own model-config schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler, write_triton_repository
from s4s_export.runtime.inputs import prepare_inputs
from s4s_export.runtime.tensorrt_build import onnx_sha256
from s4s_export.runtime.triton import model_config_schema, triton_request, validate_config


@pytest.fixture(scope="module")
def schema():
    module = model_config_schema()
    if module is None:
        pytest.skip("Triton's model-config schema is absent: pip install tritonclient, "
                    "or run .ci/fetch_runtime_wheels.sh")
    return module


def fake_engine(tmp_path, graph, batch_range, name=None):
    """Plan bytes plus the sidecar build_engine writes (only the keys Triton's writer reads)."""
    plan = tmp_path / (name or f"{graph.stem}.plan")
    plan.write_bytes(b"engine bytes")
    key = {"onnx_sha256": onnx_sha256(graph), "batch_range": list(batch_range)}
    plan.with_name(plan.name + ".json").write_text(json.dumps({"engine": key}))
    return plan


def parse(schema, path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), schema.ModelConfig())


def test_unconditional_graph_gets_dynamic_batching(schema, graphs, tmp_path):
    repo = write_triton_repository(graphs["uncond"], tmp_path / "repo", max_batch=8, queue_delay_us=500)
    model = repo / "uncond"
    assert (model / "1" / "model.onnx").read_bytes() == graphs["uncond"].read_bytes()
    config = parse(schema, model / "config.pbtxt")
    assert (config.name, config.platform, config.max_batch_size) == ("uncond", "onnxruntime_onnx", 8)
    (noise,), (images,) = config.input, config.output
    assert (noise.name, list(noise.dims), noise.data_type) == ("noise", [1, 6, 5], schema.TYPE_FP32)
    assert (images.name, list(images.dims), images.data_type) == ("images", [1, 6, 5], schema.TYPE_FP32)
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 500
    assert not config.instance_group, "onnxruntime models keep Triton's default placement"


def test_scalar_guidance_disables_batching_and_engine_model(schema, graphs, tmp_path):
    """A class-conditional graph exported before per-sample scales (guidance_scale []) is not batched."""
    plan = fake_engine(tmp_path, graphs["cond"], [2, 4, 6])  # min 2 is fine: no dynamic batching here
    repo = write_triton_repository(graphs["cond"], tmp_path / "repo", engine_path=plan, max_batch=8, instances=2)
    onnx_config = parse(schema, repo / "cond" / "config.pbtxt")
    assert onnx_config.max_batch_size == 0 and not onnx_config.HasField("dynamic_batching")
    dims = {t.name: (list(t.dims), t.data_type) for t in onnx_config.input}
    assert dims == {"noise": ([-1, 1, 6, 5], schema.TYPE_FP32), "class_labels": ([-1], schema.TYPE_INT64),
                    "guidance_scale": ([], schema.TYPE_FP32)}
    trt_config = parse(schema, repo / "cond_trt" / "config.pbtxt")
    assert trt_config.max_batch_size == 0 and not trt_config.HasField("dynamic_batching")
    assert (trt_config.platform == "tensorrt_plan"
            and (repo / "cond_trt" / "1" / "model.plan").read_bytes() == b"engine bytes")
    (group,) = trt_config.instance_group
    assert group.count == 2 and group.kind == group.KIND_GPU


def test_per_sample_guidance_graph_gets_dynamic_batching(schema, graphs, tmp_path):
    """Class-conditional graphs taking guidance_scale [B] (as `s4s-export build` writes them) are batched, on
    both platforms; their [B] inputs are dims [1] reshaped to [], sent by clients as [B, 1]."""
    graph = graphs["cond_per_sample"]
    plan = fake_engine(tmp_path, graph, [1, 4, 8])
    repo = write_triton_repository(graph, tmp_path / "repo", engine_path=plan, max_batch=16, queue_delay_us=200)
    for model, max_batch in (("cond_per_sample", 16), ("cond_per_sample_trt", 8)):
        config = parse(schema, repo / model / "config.pbtxt")
        assert config.max_batch_size == max_batch and config.dynamic_batching.max_queue_delay_microseconds == 200
        dims = {t.name: (list(t.dims), t.data_type, list(t.reshape.shape) if t.HasField("reshape") else None)
                for t in config.input}
        assert dims == {"noise": ([1, 6, 5], schema.TYPE_FP32, None),
                        "class_labels": ([1], schema.TYPE_INT64, []),
                        "guidance_scale": ([1], schema.TYPE_FP32, [])}
    with pytest.raises(S4SError, match="profile starts at batch 2"):
        write_triton_repository(graph, tmp_path / "other", engine_path=fake_engine(tmp_path, graph, [2, 4, 8]))
    spec = Sampler.load(graph).spec
    feeds = prepare_inputs(spec, n=3, seed=0, class_labels=[0, 1, 2], guidance_scale=[1.0, 2.0, 3.0])
    request = triton_request(spec, feeds)
    assert {k: v.shape for k, v in request.items()} == {"noise": (3, 1, 6, 5), "class_labels": (3, 1),
                                                        "guidance_scale": (3, 1)}
    np.testing.assert_array_equal(request["guidance_scale"][:, 0], feeds["guidance_scale"])
    scalar = Sampler.load(graphs["cond"]).spec  # not batched: sent as the runtime feeds them
    scalar_feeds = prepare_inputs(scalar, n=3, seed=0, class_labels=1, guidance_scale=2.0)
    assert {k: v.shape for k, v in triton_request(scalar, scalar_feeds).items()} == {
        "noise": (3, 1, 6, 5), "class_labels": (3,), "guidance_scale": ()}


def test_engine_batch_range_caps_max_batch(schema, graphs, tmp_path):
    plan = fake_engine(tmp_path, graphs["uncond"], [1, 2, 4])
    repo = write_triton_repository(graphs["uncond"], tmp_path / "repo", engine_path=plan, max_batch=16)
    assert parse(schema, repo / "uncond" / "config.pbtxt").max_batch_size == 16
    assert parse(schema, repo / "uncond_trt" / "config.pbtxt").max_batch_size == 4


def test_fixed_batch_graph_keeps_its_batch(schema, graphs, tmp_path):
    repo = write_triton_repository(graphs["fixed2"], tmp_path / "repo")
    config = parse(schema, repo / "fixed2" / "config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [2, 1, 6, 5]


def test_schema_violations_are_reported(schema):
    assert validate_config('name: "m"\nplatform: "onnxruntime_onnx"\n')
    with pytest.raises(S4SError, match="does not match Triton's model-config schema"):
        validate_config('name: "m"\nmax_batch_size: "eight"\n')


def test_engines_that_cannot_serve_the_graph_are_refused(graphs, tmp_path):
    uncond = graphs["uncond"]
    plan = fake_engine(tmp_path, uncond, [2, 4, 8])
    with pytest.raises(S4SError) as info:
        write_triton_repository(uncond, tmp_path / "repo", engine_path=plan)
    message = str(info.value)
    assert "profile starts at batch 2" in message and "batch_range=(1, 4, 8)" in message and "\n" not in message
    other = fake_engine(tmp_path, graphs["cond"], [1, 2, 4], name="other.plan")
    with pytest.raises(S4SError, match="was built from another graph than .*uncond.onnx"):
        write_triton_repository(uncond, tmp_path / "repo", engine_path=other)
    other.with_name("other.plan.json").unlink()
    with pytest.raises(S4SError, match="is missing or has no build key"):
        write_triton_repository(uncond, tmp_path / "repo", engine_path=other)
    assert not (tmp_path / "repo").exists(), "nothing is written before the checks pass"


def test_bad_arguments(graphs, tmp_path):
    with pytest.raises(S4SError, match="max_batch must be a positive integer"):
        write_triton_repository(graphs["uncond"], tmp_path, max_batch=0)
    with pytest.raises(S4SError, match="does not exist"):
        write_triton_repository(graphs["uncond"], tmp_path, engine_path=tmp_path / "none.plan")
