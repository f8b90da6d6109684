"""uint8 conversion, grids, the PNG writer (decoded independently), and `s4s-export sample`."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import NUM_CLASSES, decode_png
from typer.testing import CliRunner

from s4s_export.cli import app
from s4s_export.errors import S4SError
from s4s_export.runtime import Sampler, make_grid, png_bytes, to_uint8
from s4s_export.runtime.images import enlarge


def test_to_uint8_maps_range_and_layout():
    x = np.array([-1.0, -0.5, 0.0, 1.0, 3.0, -7.0], np.float32).reshape(1, 1, 2, 3)
    u = to_uint8(x)
    assert u.shape == (1, 2, 3, 1) and u.dtype == np.uint8
    assert u[0, :, :, 0].tolist() == [[0, 64, 128], [255, 255, 0]]
    nhwc = np.arange(24, dtype=np.uint8).reshape(1, 2, 3, 4)
    assert to_uint8(nhwc) is nhwc
    with pytest.raises(S4SError, match="rank 4"):
        to_uint8(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_round_trip(channels):
    image = np.random.default_rng(channels).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(png_bytes(image)), image)


def test_grid_layout():
    images = np.stack([np.full((2, 3, 1), i + 1, np.uint8) for i in range(5)])
    grid = make_grid(images, ncol=2, pad=1)
    assert grid.shape == (1 + 3 * 3, 1 + 2 * 4, 1)
    assert grid[1, 1, 0] == 1 and grid[1, 5, 0] == 2 and grid[4, 1, 0] == 3 and grid[7, 1, 0] == 5
    assert grid[7, 5, 0] == 0, "empty cell stays black"


def test_sample_command_writes_grid_and_singles(graphs, tmp_path):
    out, singles = tmp_path / "grid.png", tmp_path / "singles"
    result = CliRunner().invoke(app, ["sample", str(graphs["cond"]), "--n", "5", "--seed", "3", "--labels", "0,2",
                                      "--guidance-scale", "1.5", "--out", str(out), "--singles", str(singles),
                                      "--ncol", "5"])
    assert result.exit_code == 0, result.output
    expected = to_uint8(Sampler.load(graphs["cond"])(seed=3, n=5, class_labels=[0, 2, 0, 2, 0], guidance_scale=1.5))
    np.testing.assert_array_equal(decode_png(out.read_bytes()), enlarge(make_grid(expected, 5)))
    for i in range(5):
        np.testing.assert_array_equal(decode_png((singles / f"{i:05d}.png").read_bytes()), expected[i])
    assert "5 images 1x6x5" in result.output


def test_sample_command_all_labels_and_errors(graphs, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["sample", str(graphs["cond"]), "--n", "4", "--labels", "all",
                             "--out", str(tmp_path / "a.png")])
    assert ok.exit_code == 0, ok.output
    expected = to_uint8(Sampler.load(graphs["cond"])(seed=0, n=4, class_labels=np.arange(4) % NUM_CLASSES))
    np.testing.assert_array_equal(decode_png((tmp_path / "a.png").read_bytes()), enlarge(make_grid(expected)))
    bad = runner.invoke(app, ["sample", str(graphs["cond"]), "--labels", "x", "--out", str(tmp_path / "b.png")])
    assert isinstance(bad.exception, S4SError) and "--labels" in str(bad.exception)
    missing = runner.invoke(app, ["sample", str(graphs["cond"]), "--n", "2", "--out", str(tmp_path / "c.png")])
    assert isinstance(missing.exception, S4SError) and "pass --labels" in str(missing.exception)
    assert not (tmp_path / "c.png").exists()
