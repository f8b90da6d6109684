"""The C++ runtime and example app: build with CMake against ONNX Runtime, run its tests, match Python.

Needs cmake, a C++17 compiler, ONNX Runtime headers (.ci/fetch_ort_headers.sh, or S4S_ORT_INCLUDE_DIR)
and the onnxruntime wheel's library; skips naming what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from s4s_export.runtime import Sampler, seeded_noise

from runtime_helpers import CHW

ROOT = Path(__file__).resolve().parents[2]
HEADERS = Path(os.environ.get("S4S_ORT_INCLUDE_DIR", Path(os.environ.get("S4S_CACHE", "~/.cache/s4s-export")).expanduser()
                              / "onnxruntime-headers" / "0.4.9" / "include"))


def _requirements() -> tuple[Path, Path]:
    missing = [tool for tool in ("cmake", "make") if shutil.which(tool) is None]
    if not (shutil.which("c++") or shutil.which("g++")):
        missing.append("a C++ compiler")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    if not (HEADERS / "onnxruntime_cxx_api.h").is_file():
        pytest.skip(f"no ONNX Runtime headers in {HEADERS}: run .ci/fetch_ort_headers.sh")
    libraries = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so*"))
    if not libraries:
        pytest.skip("the installed onnxruntime wheel has no libonnxruntime.so")
    return HEADERS, libraries[0]


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    headers, library = _requirements()
    out = tmp_path_factory.mktemp("cpp-build")
    configure = ["cmake", "-S", str(ROOT / "examples" / "cpp"), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DOnnxRuntime_INCLUDE_DIR={headers}", f"-DOnnxRuntime_LIBRARY={library}", "-DS4S_WITH_TENSORRT=OFF"]
    for command in (configure, ["cmake", "--build", str(out), "-j2"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out


def test_library_tests_pass(build, graphs):
    env = {**os.environ, "S4S_TEST_UNCOND": str(graphs["uncond"]), "S4S_TEST_COND": str(graphs["cond"])}
    result = subprocess.run(["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0 and "100% tests passed" in result.stdout, result.stdout + result.stderr


def run_app(build: Path, tmp_path: Path, graph: Path, noise: np.ndarray, *args: str) -> Path:
    noise_file, raw = tmp_path / "noise.f32", tmp_path / "out.raw"
    noise.astype("<f4").tofile(noise_file)
    result = subprocess.run([str(build / "s4s_sample"), str(graph), "--noise", str(noise_file), "--raw", str(raw),
                             "--out", str(tmp_path / "grid.ppm"), "--threads", "1", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"({noise.shape[0]} images {'x'.join(map(str, CHW))}" in result.stdout
    return raw


@pytest.mark.parametrize("graph,args,kwargs", [
    ("uncond", (), {}),
    ("cond", ("--labels", "0,2,3", "--guidance", "1.75"), {"class_labels": [0, 2, 3, 0, 2, 3, 0], "guidance_scale": 1.75}),
])
def test_example_matches_python(build, graphs, tmp_path, graph, args, kwargs):
    noise = seeded_noise(CHW, 7, seed=11)
    expected = Sampler.load(graphs[graph])(noise=noise, **kwargs)
    got = np.fromfile(run_app(build, tmp_path, graphs[graph], noise, *args), dtype="<f4").reshape(expected.shape)
    assert np.abs(got - expected).max() <= 1e-6


def test_example_uint8_output_and_ppm(build, graphs, tmp_path):
    noise = seeded_noise(CHW, 5, seed=2)
    expected = Sampler.load(graphs["uint8"])(noise=noise)
    got = np.fromfile(run_app(build, tmp_path, graphs["uint8"], noise), dtype=np.uint8).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)
    ppm = (tmp_path / "grid.ppm").read_bytes()
    header, width, height = b"P6\n", 2 + 3 * (CHW[2] + 2), 2 + 2 * (CHW[1] + 2)
    assert ppm.startswith(header + f"{width} {height}\n255\n".encode())
    pixels = np.frombuffer(ppm[-width * height * 3:], np.uint8).reshape(height, width, 3)
    np.testing.assert_array_equal(pixels[2:2 + CHW[1], 2:2 + CHW[2], 0], expected[0, :, :, 0])


def test_example_reports_errors(build, graphs, tmp_path):
    result = subprocess.run([str(build / "s4s_sample"), str(graphs["cond"]), "--n", "2", "--out", str(tmp_path / "g.ppm")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "class-conditional" in result.stderr
