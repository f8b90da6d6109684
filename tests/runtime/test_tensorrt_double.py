"""build_engine and TrtRunner on CPU, against the TEST DOUBLE of TensorRT and cudart in tensorrt_double.py.

Nothing here runs TensorRT: the double executes the graph with onnxruntime. These tests check our code's
side: the engine cache, request splitting, CUDA-graph capture and replay, per-thread contexts, input
casting, the shared logger and the errors. test_trt_api_surface.py checks the names against the real bindings.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading

import numpy as np
import onnx
import pytest
from runtime_helpers import CHW, NUM_CLASSES
from tensorrt_double import ContextSharedAcrossThreads

from s4s_export.contract import sidecar_path
from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler, build_engine, tensorrt_build
from s4s_export.runtime.tensorrt_build import engine_cache_path

NOISE = np.random.default_rng(0).standard_normal((7, *CHW), dtype=np.float32)
LABELS = np.arange(7) % (NUM_CLASSES + 1)


@pytest.fixture
def graph(graphs, tmp_path):
    """The conditional tiny graph (and its sidecar) copied into this test's directory."""
    for suffix in (".onnx", ".json"):
        shutil.copy(graphs["cond"].with_suffix(suffix), tmp_path / f"cond{suffix}")
    return tmp_path / "cond.onnx"


def reference(graph, n: int, start: int = 0, guidance: float = 2.0) -> np.ndarray:
    return Sampler.load(graph)(noise=NOISE[start:start + n], class_labels=LABELS[start:start + n],
                               guidance_scale=guidance)


def key_of(plan) -> dict:
    return json.loads(sidecar_path(plan).read_text())["engine"]


def test_engine_cache_reuses_plans_per_key(double, graph, tmp_path):
    plan = build_engine(graph, batch_range=(1, 2, 4))
    assert double.builds == 1 and plan == graph.with_suffix(".plan")
    first = plan.read_bytes()
    assert engine_cache_path(key_of(plan)).read_bytes() == first
    assert build_engine(graph, batch_range=(1, 2, 4)) == plan and double.builds == 1, "unchanged key: reused"
    build_engine(graph, batch_range=(1, 2, 8))
    assert double.builds == 2 and key_of(plan)["batch_range"] == [1, 2, 8]
    build_engine(graph, batch_range=(1, 2, 4))
    assert double.builds == 2 and plan.read_bytes() == first, "a key seen before comes from the engine cache"
    assert key_of(plan)["batch_range"] == [1, 2, 4]
    other = build_engine(graph, tmp_path / "elsewhere.plan", batch_range=(1, 2, 4))
    assert double.builds == 2 and other.read_bytes() == first and key_of(other) == key_of(plan)
    build_engine(graph, batch_range=(1, 2, 4), force=True)
    assert double.builds == 3
    model = onnx.load(str(graph))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "note": '"changed"'})
    onnx.save(model, str(graph))
    build_engine(graph, batch_range=(1, 2, 4))
    assert double.builds == 4, "a changed graph changes the key"
    double.gpu_name = "Test-double GPU B"
    build_engine(graph, batch_range=(1, 2, 4))
    assert double.builds == 5 and key_of(plan)["gpu"] == "Test-double GPU B"
    assert (tmp_path / "cache" / "tensorrt" / "timing-trt10.16.1.11-sm9.0.cache").is_file()


def test_a_crash_while_replacing_a_plan_leaves_no_stale_key(double, graph, monkeypatch):
    plan = build_engine(graph, batch_range=(1, 2, 4))

    def disk_full(src, tmp):
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(tensorrt_build, "_link_or_copy", disk_full)
        with pytest.raises(OSError):
            build_engine(graph, batch_range=(1, 2, 8))
    assert plan.is_file() and not sidecar_path(plan).exists(), "the old key must not describe an unknown plan"
    with pytest.raises(S4SError, match="has no sidecar cond.plan.json"):
        Sampler.load(plan)
    build_engine(graph, batch_range=(1, 2, 8))
    assert double.builds == 2 and key_of(plan)["batch_range"] == [1, 2, 8], "the cached plan survived the crash"


def test_engines_for_another_gpu_or_version_are_refused(double, graph):
    plan = build_engine(graph, batch_range=(1, 2, 4))
    double.gpu_name, double.compute = "Test-double GPU B", (8, 0)
    with pytest.raises(S4SError) as info:
        Sampler.load(plan)
    message = str(info.value)
    assert "built for Test-double GPU A (compute 9.0; here: Test-double GPU B, compute 8.0)" in message
    assert "s4s-export build --trt" in message and "\n" not in message
    double.gpu_name, double.compute = "Test-double GPU A", (9, 0)
    double.trt.__version__ = double.version = "11.4.0.106"
    with pytest.raises(S4SError, match=r"built for TensorRT 10.16.1.11 \(here: 11.4.0.106\)"):
        Sampler.load(plan)


def test_a_plan_without_its_sidecar_is_refused(double, graph):
    plan = build_engine(graph, batch_range=(1, 2, 4))
    sidecar_path(plan).unlink()
    with pytest.raises(S4SError) as info:
        Sampler.load(plan)
    message = str(info.value)
    assert "has no sidecar cond.plan.json" in message and "build_engine" in message and "\n" not in message


def test_requests_are_split_into_runs(double, graph):
    plan = build_engine(graph, batch_range=(1, 2, 4))
    sampler = Sampler.load(plan)
    assert sampler.spec.batch_range == (1, 4) and sampler.num_classes == NUM_CLASSES
    np.testing.assert_allclose(sampler(noise=NOISE, class_labels=LABELS, guidance_scale=2.0), reference(graph, 7),
                               atol=1e-6)
    assert [(b, kind) for b, kind, _ in double.runs] == [(4, "stream"), (3, "stream")]
    capped = Sampler.load(plan, max_batch=2)
    assert capped.spec.batch_range == (1, 2)
    np.testing.assert_allclose(capped(noise=NOISE, class_labels=LABELS, guidance_scale=2.0), reference(graph, 7),
                               atol=1e-6)
    assert [b for b, _, _ in double.runs[2:]] == [2, 2, 2, 1]


def test_max_batch_never_goes_below_the_engines_minimum(double, graph):
    plan = build_engine(graph, batch_range=(2, 2, 4))
    sampler = Sampler.load(plan, max_batch=1)
    assert sampler.spec.batch_range == (2, 2)
    assert sampler(seed=0, n=4, class_labels=1).shape == (4, *CHW)
    with pytest.raises(S4SError, match="below the engine's minimum batch 2"):
        sampler(seed=0, n=1, class_labels=1)


def test_cuda_graph_is_captured_once_and_replayed(double, graph):
    sampler = Sampler.load(build_engine(graph, batch_range=(1, 2, 4)), cuda_graph_batch=4)
    for start in (0, 3, 1):  # new inputs each time: a replay must read them
        np.testing.assert_allclose(sampler(noise=NOISE[start:start + 4], class_labels=LABELS[start:start + 4],
                                           guidance_scale=2.0), reference(graph, 4, start), atol=1e-6)
    assert (double.captures, double.launches) == (1, 2)
    assert [kind for _, kind, _ in double.runs] == ["stream", "graph", "graph"]
    for n in (3, 4, 3, 4, 2, 4):  # other batches in between do not cost a new capture
        np.testing.assert_allclose(sampler(noise=NOISE[:n], class_labels=LABELS[:n], guidance_scale=2.0),
                                   reference(graph, n), atol=1e-6)
    assert (double.captures, double.launches) == (1, 5)
    assert len(double.contexts) == 2, "one context for the graph batch, one for the rest"


def test_a_failed_capture_warns_once_and_runs_without_graphs(double, graph, caplog):
    double.fail_capture = True
    sampler = Sampler.load(build_engine(graph, batch_range=(1, 2, 4)), cuda_graph_batch=4)
    with caplog.at_level(logging.WARNING, logger="s4s_export.runtime.tensorrt_runner"):
        for start in (0, 3, 2):
            np.testing.assert_allclose(sampler(noise=NOISE[start:start + 4], class_labels=LABELS[start:start + 4],
                                               guidance_scale=2.0), reference(graph, 4, start), atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "CUDA graph capture at batch 4 failed" in warnings[0]
    assert "cudaErrorStreamCaptureInvalidated" in warnings[0]
    assert (double.captures, double.launches) == (0, 0) and not sampler.runner.graphs_enabled
    assert [kind for _, kind, _ in double.runs] == ["stream"] * 3


def test_cuda_graph_batch_is_checked_against_the_capped_range(double, graph):
    plan = build_engine(graph, batch_range=(1, 2, 4))
    with pytest.raises(S4SError, match=r"cuda_graph_batch 4 is outside the batch range \[1, 2\] .*capped by max_batch"):
        Sampler.load(plan, cuda_graph_batch=4, max_batch=2)
    assert Sampler.load(plan, cuda_graph_batch=2, max_batch=2).runner.cuda_graph_batch == 2
    with pytest.raises(S4SError, match="outside the batch range"):
        Sampler.load(plan, cuda_graph_batch=8)
    for bad in (0, "4", 2.0, True):
        with pytest.raises(S4SError, match="cuda_graph_batch must be a positive integer"):
            Sampler.load(plan, cuda_graph_batch=bad)


def test_each_thread_gets_its_own_contexts(double, graph):
    sampler = Sampler.load(build_engine(graph, batch_range=(1, 2, 4)), cuda_graph_batch=3)
    expected = {n: reference(graph, n) for n in (2, 3)}
    errors, together = [], threading.Barrier(4, timeout=60)  # all alive at once: thread ids stay distinct

    def work():
        together.wait()
        try:
            for n in (3, 2, 3, 3):
                np.testing.assert_allclose(sampler(noise=NOISE[:n], class_labels=LABELS[:n], guidance_scale=2.0),
                                           expected[n], atol=1e-6)
        except (AssertionError, ContextSharedAcrossThreads, S4SError, RuntimeError) as e:  # surfaced below
            errors.append(e)
        together.wait()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(double.contexts) == 8 and len({c.owner for c in double.contexts}) == 4, "two contexts per thread"
    assert (double.captures, double.launches) == (4, 8)


def test_inputs_are_cast_to_the_engines_dtypes_and_checked(double, graph):
    double.int32_inputs = True
    sampler = Sampler.load(build_engine(graph, batch_range=(1, 2, 4)))
    assert sampler.spec.inputs["class_labels"].dtype == np.int32
    np.testing.assert_allclose(sampler(noise=NOISE[:3], class_labels=LABELS[:3], guidance_scale=2.0),
                               reference(graph, 3), atol=1e-6)
    runner = sampler.runner
    feeds = {"noise": NOISE[:2], "class_labels": LABELS[:2], "guidance_scale": np.float32(2.0)}
    with pytest.raises(S4SError, match=r"input class_labels has shape \[3\] \(12 bytes\); "
                                       r"the engine expects \[2\] int32"):
        runner.infer({**feeds, "class_labels": LABELS[:3]})
    with pytest.raises(S4SError, match=r"do not match the engine's inputs"):
        runner.infer({"noise": NOISE[:2]})
    with pytest.raises(S4SError, match=r"batch 5 is outside this engine's batch range \[1, 4\]"):
        runner.infer({**feeds, "noise": np.zeros((5, *CHW), np.float32), "class_labels": np.zeros(5, np.int64)})


def test_one_tensorrt_logger_for_builds_and_runs(double, graph):
    plan = build_engine(graph, batch_range=(1, 2, 4), verbose=True)
    Sampler.load(plan)(seed=0, n=2, class_labels=0)
    build_engine(graph, batch_range=(1, 2, 8))
    (logger,) = double.loggers
    assert double.build_severities == [logger.INFO, logger.WARNING], "verbose raises the level for its build only"
    assert logger.min_severity == logger.WARNING


def test_build_errors_name_the_problem(double, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(S4SError, match="TensorRT could not parse .*junk.onnx: failed to parse the ONNX file"):
        build_engine(junk)


def test_per_sample_guidance_gets_a_profile_and_splits(double, graphs, tmp_path):
    """guidance_scale [B] is a batched input: the profile spans it like noise, and split runs take their slice."""
    for suffix in (".onnx", ".json"):
        shutil.copy(graphs["cond_per_sample"].with_suffix(suffix), tmp_path / f"per_sample{suffix}")
    graph = tmp_path / "per_sample.onnx"
    plan = build_engine(graph, batch_range=(1, 2, 4))
    profile = json.loads(plan.read_bytes())["profile"]
    assert profile["guidance_scale"] == [[1], [2], [4]] and profile["noise"] == [[b, *CHW] for b in (1, 2, 4)]
    scales = np.linspace(-1, 4, 7)
    with Sampler.load(plan) as sampler:
        got = sampler(noise=NOISE, class_labels=LABELS, guidance_scale=scales)  # runs of 4 and 3
    expected = Sampler.load(graph)(noise=NOISE, class_labels=LABELS, guidance_scale=scales)
    np.testing.assert_allclose(got, expected, atol=1e-6)
