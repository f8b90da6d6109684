"""The family examples (examples/families/) run end to end: tiny model -> save_pretrained -> learn -> eval."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
pytest.importorskip("transformers", reason="the diffusers extra (transformers) is not installed")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "families"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["pixel_unet.py", "flow_transformer.py"])
def test_family_example_runs(script, tmp_path):
    env = {**os.environ, "S4S_QUIET": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(EXAMPLES / script), str(tmp_path)], capture_output=True, text=True,
                       env=env, timeout=900, cwd=EXAMPLES)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "workspace" / "solvers" / "nfe4.json").is_file()
    assert (tmp_path / "workspace" / "eval-samples.png").is_file()
    assert "nfe4.json" in r.stdout and "dpmpp3m" in r.stdout
