"""The Python and Triton examples run on a tiny graph (the C++ one is in test_cpp.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import CHW, NUM_CLASSES, decode_png

from s4s_export.noise import label_set, noise_set
from s4s_export.runtime import Sampler, make_grid, to_uint8

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_python_app_is_torch_free_and_writes_the_grid(graphs, tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run([sys.executable, str(EXAMPLES / "python_app.py"), str(graphs["cond"]), "--n", "6",
                             "--seed", "4", "--labels", "1,2", "--out", str(out)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "NFE 1, solver tiny, images [6, 1, 6, 5] float32" in result.stdout and "torch loaded: False" in result.stdout
    expected = to_uint8(Sampler.load(graphs["cond"])(seed=4, n=6, class_labels=[1, 2, 1, 2, 1, 2]))
    np.testing.assert_array_equal(decode_png(out.read_bytes()), make_grid(expected))
    bad = subprocess.run([sys.executable, str(EXAMPLES / "python_app.py"), str(graphs["cond"]), "--labels", "9"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "out of range" in bad.stderr


def test_triton_example_writes_a_repository(graphs, tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLES / "triton" / "make_repository.py"), str(graphs["uncond"]),
                             str(tmp_path / "repo"), "--name", "sampler"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / "sampler" / "1" / "model.onnx").is_file()
    assert "sampler/config.pbtxt" in result.stdout


@pytest.mark.parametrize("graph,args", [("uncond", []), ("cond", ["--guidance-scale", "2"])])
def test_triton_client_sends_the_runtimes_seeded_noise(graphs, tmp_path, graph, args):
    """The Triton example's request: eval's noise bits (noise_set) and labels (label_set) for the same seed."""
    out = tmp_path / "request.npz"
    result = subprocess.run([sys.executable, str(EXAMPLES / "triton" / "client.py"), str(graphs[graph]), "--n", "5",
                             "--seed", "1000000", "--save-request", str(out), *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    request = dict(np.load(out))
    np.testing.assert_array_equal(request["noise"].view(np.uint32),
                                  noise_set(CHW, 5, 1_000_000).numpy().view(np.uint32))
    sampler = Sampler.load(graphs[graph])
    if graph == "cond":
        np.testing.assert_array_equal(request["class_labels"], label_set(NUM_CLASSES, 5, 1_000_000).numpy())
        assert request["guidance_scale"] == np.float32(2) and request["guidance_scale"].shape == ()
        expected = sampler(seed=1_000_000, n=5, class_labels=request["class_labels"], guidance_scale=2.0)
    else:
        assert set(request) == {"noise"}
        expected = sampler(seed=1_000_000, n=5)
    np.testing.assert_array_equal(sampler(**request), expected)


def test_triton_client_without_tritonclient_is_one_line(graphs, tmp_path):
    if importlib.util.find_spec("tritonclient") is not None:
        pytest.skip("tritonclient is installed: sending would need a running server")
    result = subprocess.run([sys.executable, str(EXAMPLES / "triton" / "client.py"), str(graphs["uncond"])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: sending needs Triton's client: pip install 'tritonclient[http]' (or use --save-request)"]
