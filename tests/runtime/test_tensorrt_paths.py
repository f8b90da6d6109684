"""TensorRT code paths that run without TensorRT or a GPU: clear errors, engine keys, provider options."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from s4s_export.cachedir import cache_root
from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler, build_engine
from s4s_export.runtime.cuda import GpuInfo
from s4s_export.runtime.onnxruntime_runner import PROVIDERS, provider_options
from s4s_export.runtime.spec import TensorSpec
from s4s_export.runtime.tensorrt_build import check_engine_target

CACHE = cache_root()
no_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")

H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
KEY = {"tensorrt": "10.16.1.11", "gpu": H100.name, "compute_capability": "9.0", "hardware_compat": False}


@no_tensorrt
def test_build_without_tensorrt_names_it_and_the_install(graphs):
    with pytest.raises(S4SError) as info:
        build_engine(graphs["uncond"])
    message = str(info.value)
    assert "TensorRT is not available" in message and "pip install tensorrt-cu12" in message and "\n" not in message


@no_tensorrt
def test_loading_an_engine_without_tensorrt(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\0" * 16)
    (tmp_path / "model.plan.json").write_text("{}")
    with pytest.raises(S4SError, match="TensorRT is not available"):
        Sampler.load(plan)
    with pytest.raises(S4SError, match="does not exist"):
        Sampler.load(tmp_path / "other.engine")


def test_build_settings_are_checked_first(graphs, tmp_path):
    with pytest.raises(S4SError, match="does not exist"):
        build_engine(tmp_path / "missing.onnx")
    with pytest.raises(S4SError, match="min <= opt <= max"):
        build_engine(graphs["uncond"], batch_range=(4, 2, 8))
    with pytest.raises(S4SError, match="opt_level must be an integer 0..5"):
        build_engine(graphs["uncond"], opt_level=7)


def test_engine_target_check():
    check_engine_target(Path("m.plan"), KEY, H100, "10.16.1.11")
    with pytest.raises(S4SError) as info:
        check_engine_target(Path("m.plan"), KEY, H100, "11.4.0.106")
    assert ("built for TensorRT 10.16.1.11 (here: 11.4.0.106)" in str(info.value)
            and "s4s-export build --trt" in str(info.value))
    a100 = GpuInfo("NVIDIA A100-SXM4-80GB", "8.0")
    with pytest.raises(S4SError, match=r"NVIDIA H100 80GB HBM3 \(compute 9.0; "
                                       r"here: NVIDIA A100-SXM4-80GB, compute 8.0\)"):
        check_engine_target(Path("m.plan"), KEY, a100, "10.16.1.11")
    portable = KEY | {"hardware_compat": True}
    check_engine_target(Path("m.plan"), portable, a100, "10.16.1.11")
    with pytest.raises(S4SError, match="Ampere or newer"):
        check_engine_target(Path("m.plan"), portable, GpuInfo("Tesla T4", "7.5"), "10.16.1.11")


# TensorRT execution-provider option names in onnxruntime-gpu 1.31.1
ORT_TRT_KEYS = {"device_id", "trt_fp16_enable", "trt_bf16_enable", "trt_int8_enable", "trt_engine_cache_enable",
                "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_timing_cache_enable", "trt_timing_cache_path",
                "trt_force_timing_cache", "trt_cuda_graph_enable", "trt_builder_optimization_level",
                "trt_max_workspace_size", "trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"}


def test_onnxruntime_provider_options(tmp_path):
    inputs = [TensorSpec("noise", np.dtype("float32"), (None, 1, 6, 5)),
              TensorSpec("class_labels", np.dtype("int64"), (None,)),
              TensorSpec("guidance_scale", np.dtype("float32"), ())]
    trt, cuda, cpu = provider_options([PROVIDERS["tensorrt"], PROVIDERS["cuda"], PROVIDERS["cpu"]],
                                      tmp_path / "m.onnx", inputs, (1, 16), 1)
    name, options = trt
    assert name == "TensorrtExecutionProvider" and set(options) <= ORT_TRT_KEYS
    assert options["trt_profile_min_shapes"] == "noise:1x1x6x5,class_labels:1"
    assert options["trt_profile_opt_shapes"] == "noise:4x1x6x5,class_labels:4"
    assert options["trt_profile_max_shapes"] == "noise:16x1x6x5,class_labels:16"
    assert options["trt_engine_cache_path"] == str(tmp_path / "m.ort-trt") and options["device_id"] == 1
    assert "trt_fp16_enable" not in options, "the weak-typing switch must not lower an FP32 graph's precision"
    assert cuda == ("CUDAExecutionProvider", {"device_id": 1}) and cpu == "CPUExecutionProvider"


def _fetched(*parts: str) -> Path:
    path = CACHE.joinpath(*parts)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if any(tag not in w.read_text() and "py3-none" not in w.read_text() for w in path.glob("*.dist-info/WHEEL")):
        pytest.skip(f"{path} holds wheels for another Python than {tag}: rerun .ci/fetch_runtime_wheels.sh with it")
    if not (path / ".complete").is_file():
        pytest.skip(f"{path} not fetched: run .ci/fetch_runtime_wheels.sh")
    return path


@no_tensorrt
def test_no_gpu_is_named_when_cuda_python_is_present(tmp_path, graphs):
    """With the real cuda-bindings wheel (no driver here), the GPU check names what is missing."""
    cuda = _fetched("cuda-bindings")
    script = textwrap.dedent("""
        import sys
        from s4s_export.errors import S4SError
        from s4s_export.runtime.cuda import gpu_info
        try:
            gpu_info(0)
        except S4SError as e:
            print(e)
    """)
    env = {**os.environ, "PYTHONPATH": f"{cuda}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip()
    if not out:
        pytest.skip("a CUDA GPU is usable here")
    assert out.startswith("no usable NVIDIA GPU here (cudaError") and "onnxruntime" in out


def _with_external_data(graph: Path, out: Path) -> Path:
    import onnx

    model = onnx.load(str(graph))
    onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
              location=out.name + ".data", size_threshold=0)
    return out


def test_engine_key_inputs_cover_external_weights_and_description(graphs, tmp_path):
    from s4s_export.contract import graph_description
    from s4s_export.runtime.tensorrt_build import onnx_sha256

    path = _with_external_data(graphs["cond"], tmp_path / "ext.onnx")
    digest = onnx_sha256(path)
    weights = path.with_name("ext.onnx.data")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert onnx_sha256(path) != digest, "changed external weights must change the engine key"
    bare = tmp_path / "no_sidecar.onnx"  # the description then comes from the metadata_props alone
    bare.write_bytes(graphs["cond"].read_bytes())
    info = graph_description(bare)
    assert info["model"]["num_classes"] == 3 and info["solver"] == "tiny" and info["nfe"] == 1


def test_external_weights_travel_with_the_graph(graphs, tmp_path):
    from s4s_export.runtime import write_triton_repository

    path = _with_external_data(graphs["uncond"], tmp_path / "ext.onnx")
    repo = write_triton_repository(path, tmp_path / "repo")
    copied = repo / "ext" / "1"
    assert (copied / "ext.onnx.data").read_bytes() == (tmp_path / "ext.onnx.data").read_bytes()
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 5), dtype=np.float32)
    np.testing.assert_array_equal(Sampler.load(copied / "model.onnx")(noise=x), Sampler.load(graphs["uncond"])(noise=x))
