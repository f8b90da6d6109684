"""`eval --plot`: the quality-vs-NFE chart (matplotlib, optional) and the numpy-only sample grid."""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np
import pytest
import torch

from s4s_export import plots
from s4s_export.errors import S4SError
from s4s_export.evaluate import evaluate
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver


def read_png(path) -> np.ndarray:
    """Decode an 8-bit, filter-0 PNG as written by runtime.images (enough to check our own files)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, color = struct.unpack(">IIBB", data[16:26])
    idat, pos = b"", 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        if data[pos + 4:pos + 8] == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * channels)
    assert (rows[:, 0] == 0).all() and depth == 8
    return rows[:, 1:].reshape(h, w, channels)


def test_grid_nfe():
    assert plots.grid_nfe([3, 5, 8]) == 5
    assert plots.grid_nfe([8, 4, 6]) == 4


def test_grid_path():
    assert plots.grid_path("out/q.png").as_posix() == "out/q-samples.png"


def test_sample_grid_rows_and_scale(tmp_path):
    k, h = 3, 8
    rows = [("target", torch.full((k, 1, h, h), 1.0)), ("a", torch.full((k, 1, h, h), -1.0)),
            ("b", torch.zeros(k, 1, h, h))]
    pytest.importorskip("matplotlib", reason="the row names are drawn with the optional [plot] extra")
    img = read_png(plots.sample_grid(rows, tmp_path / "g.png"))
    scale = plots.GRID_MIN_PIXELS // h
    pad, side, left = plots.GRID_PAD, h * scale, plots.LABEL_WIDTH
    assert img.shape == (pad + 3 * (side + pad), left + pad + k * (side + pad), 1)
    for r, value in enumerate((255, 0, 128)):  # one row per entry, in order
        y = pad + r * (side + pad)
        assert (img[y:y + side, left + pad:left + pad + side] == value).all()
        assert img[y:y + side, :left].max() > 100, f"row {r} has its name drawn on its left"
    assert img[:, :left].max() > 100 and img[:pad, :left].max() == 0


def test_require_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(S4SError, match=r"pip install 's4s-export\[plot\]'"):
        plots.require_matplotlib()


def test_eval_plot_fails_before_sampling_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr("s4s_export.evaluate.load_model", lambda *a: pytest.fail("sampled before checking --plot"))
    with pytest.raises(S4SError, match="matplotlib"):
        evaluate("gmm", ["ipndm"], [3], samples=2, plot="x.png")


def test_eval_writes_chart_and_grid(gmm, tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs the optional [plot] extra")
    info = gmm.info
    learned = tmp_path / "ws" / "solvers"
    for nfe in (3, 4):  # two solver files of one method form one line of the chart
        table = make_solver("dpmpp2m", nfe, "logsnr", info.sigma_min, info.sigma_max)
        save_solver_file(learned / f"nfe{nfe}.json", SolverFile(table, {"method": "s4s-alt"}))
    files = [str(learned / "nfe3.json"), str(learned / "nfe4.json")]
    report = evaluate("gmm", ["ipndm", *files], [3, 4], samples=3, plot=str(tmp_path / "q.png"))
    p = report["plots"]
    assert p["grid_nfe"] == 3 and p["grid_rows"] == ["reference ODE solution", "ipndm", files[0]]
    chart = read_png_header(tmp_path / "q.png")
    assert chart[0] > 300 and chart[1] > 200
    grid = read_png(tmp_path / "q-samples.png")
    side = info.shape[1] * (plots.GRID_MIN_PIXELS // info.shape[1])
    assert grid.shape[0] == 6 + 3 * (side + 6) and grid.shape[1] == plots.LABEL_WIDTH + 6 + 3 * (side + 6)
    assert plots.series_name(files[0]) == plots.series_name(files[1]) == f"s4s-alt ({learned})"
    assert plots.series_name("ipndm") == "ipndm"


def read_png_header(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_chart_refuses_an_empty_report(tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs the optional [plot] extra")
    report = {"model": {"name": "gmm"}, "samples": 1, "teacher": {"solver": "reference", "nfe": 0, "schedule": ""},
              "results": [{"solver": "ipndm", "nfe": 3, "metrics": {}}]}
    with pytest.raises(S4SError, match="nothing to draw"):
        plots.quality_plot(report, tmp_path / "q.png")
