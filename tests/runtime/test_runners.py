"""OrtRunner and TrtRunner share one interface (Polygraphy-shaped): infer, close (idempotent), `with`, an error
after close; Sampler closes its runner. TrtBuildConfig is frozen and its fields are the engine-cache key.
TrtRunner runs against the TensorRT/cudart test double (tensorrt_double.py), as in test_tensorrt_double.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading

import numpy as np
import pytest
from runtime_helpers import CHW

from s4s_export.contract import sidecar_path
from s4s_export.errors import S4SError
from s4s_export.runtime import OrtRunner, Runner, Sampler, TrtBuildConfig, TrtRunner, build_engine

NOISE = np.random.default_rng(1).standard_normal((2, *CHW), dtype=np.float32)


@pytest.fixture
def plan(double, graphs, tmp_path):
    for suffix in (".onnx", ".json"):
        shutil.copy(graphs["uncond"].with_suffix(suffix), tmp_path / f"uncond{suffix}")
    return build_engine(tmp_path / "uncond.onnx", batch_range=(1, 2, 4))


def _check_lifecycle(runner: Runner, expected: np.ndarray) -> None:
    with runner as same:
        assert same is runner and not runner.closed
        np.testing.assert_allclose(runner.infer({"noise": NOISE}), expected, atol=1e-6)
    assert runner.closed
    runner.close()  # idempotent
    with pytest.raises(S4SError, match=r"is closed; load the (graph|engine) again"):
        runner.infer({"noise": NOISE})


def test_ort_runner_lifecycle(graphs):
    expected = Sampler.load(graphs["uncond"])(noise=NOISE)
    runner = OrtRunner(graphs["uncond"], providers=["cpu"])
    assert runner.kind == "graph" and runner.spec.noise.shape[1:] == CHW
    _check_lifecycle(runner, expected)
    assert not hasattr(runner, "session")


def test_trt_runner_lifecycle_frees_every_threads_memory(double, plan, graphs):
    expected = Sampler.load(graphs["uncond"])(noise=NOISE)
    runner = TrtRunner(plan, cuda_graph_batch=2)
    assert runner.kind == "engine"
    worker = threading.Thread(target=lambda: runner.infer({"noise": NOISE}))
    worker.start()
    worker.join()
    assert double.memory.buffers, "two threads' device buffers are allocated"
    _check_lifecycle(runner, expected)
    assert not double.memory.buffers, "close() freed every thread's device buffers"


def test_sampler_closes_its_runner(graphs):
    with Sampler.load(graphs["uncond"]) as sampler:
        images = sampler(noise=NOISE)
    assert sampler.runner.closed and images.shape == (2, *CHW)
    sampler.close()
    with pytest.raises(S4SError, match="is closed"):
        sampler(noise=NOISE)


def test_build_config_fields_are_the_engine_key(double, plan, tmp_path):
    config = TrtBuildConfig(batch_range=[1, 2, 4])
    assert config.batch_range == (1, 2, 4) and hash(config) == hash(TrtBuildConfig(batch_range=(1, 2, 4)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.opt_level = 5
    key = json.loads(sidecar_path(plan).read_text())["engine"]
    fields = {f.name for f in dataclasses.fields(TrtBuildConfig)}
    assert set(key) == fields | {"onnx_sha256", "gpu", "compute_capability", "tensorrt"}
    assert {k: key[k] for k in fields} == config.key() == {**dataclasses.asdict(config), "batch_range": [1, 2, 4]}
    graph = tmp_path / "uncond.onnx"
    assert build_engine(graph, config=config) == plan and double.builds == 1, "the same config: reused"
    build_engine(graph, config=dataclasses.replace(config, tf32=False))
    assert double.builds == 2 and json.loads(sidecar_path(plan).read_text())["engine"]["tf32"] is False


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_range": (4, 2, 8)}, "batch_range must be three integers"),
    ({"opt_level": 7}, "opt_level must be an integer 0..5"),
    ({"batch": 4}, "unknown build setting batch; TrtBuildConfig has: batch_range, opt_level"),
    ({"config": TrtBuildConfig(), "opt_level": 2}, "either as config= or as keywords"),
])
def test_build_settings_errors(graphs, kwargs, message):
    with pytest.raises(S4SError, match=message):
        build_engine(graphs["uncond"], **kwargs)
