"""The Python and Triton examples run on a tiny graph (the C++ one is in test_cpp.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from s4s_export.runtime import Sampler, make_grid, to_uint8

from runtime_helpers import decode_png

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
