"""`s4s-export bench` and benchmarks/gpu.py --smoke: timings side by side, overhead ratios, skip reasons."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s4s_export.bench.backends import tensorrt_fns
from s4s_export.bench.learning_cost import learning_cost
from s4s_export.bench.report import markdown
from s4s_export.bench.run import BenchRequest, bench, model_workspace
from s4s_export.errors import S4SError
from s4s_export.timing import describe_machine, interleaved_ms, machine
from s4s_export.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def test_interleaved_rounds_and_warmup():
    calls = []
    times = interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(times) == {"a", "b"}
    for t in times.values():
        assert t["repeats"] == 3 and 0 <= t["min_ms"] <= t["median_ms"] <= t["max_ms"]


def test_machine_description():
    m = machine(threads=1)
    assert m["threads"] == 1 and m["cpu_cores"] >= 1 and m["date_utc"].endswith("UTC")
    line = describe_machine(m)
    assert f"{m['cpu_cores']}-core" in line and m["torch"] in line


def test_bench_eager_rows_and_ratios(gmm):
    req = BenchRequest(model="gmm", nfe=3, batches=(1, 2), backends=("pytorch", "tensorrt"), repeats=2, warmup=1,
                       workdir="/nonexistent-workspace")
    report = bench(req)
    rows = report["rows"]
    assert [(r["backend"], r["batch"]) for r in rows] == [("pytorch", 1), ("pytorch", 2)]
    for r in rows:
        assert r["sampler_ms"] > 0 and r["call_ms"] > 0
        assert r["overhead"] == pytest.approx(r["sampler_ms"] / (3 * r["call_ms"]))
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1e3 / r["sampler_ms"])
        assert r["vs_eager"] == 1.0
    assert report["solver"] == "dpmpp3m" and report["nfe"] == 3
    assert "TensorRT" in report["skipped"]["tensorrt"]  # no TensorRT (or no GPU) on CI machines
    assert "--learn-samples" in report["learning"]["skipped"]
    table = markdown(report)
    assert table.count("| pytorch |") == 2 and "- tensorrt: skipped: TensorRT" in table
    assert "Machine: " in table and "median of 2 interleaved rounds" in table and "- learning: skipped:" in table


def test_bench_rejects_unknown_backend_and_wrong_nfe(gmm, tmp_path):
    with pytest.raises(S4SError, match="unknown backend 'cuda'"):
        bench(BenchRequest(model="gmm", backends=("cuda",)))
    from s4s_export.solverfile import SolverFile, save_solver_file
    from s4s_export.solvers import make_solver

    path = save_solver_file(tmp_path / "s.json", SolverFile(make_solver("ipndm", 4, "logsnr", 0.002, 80.0), {}))
    with pytest.raises(S4SError, match="is for NFE 4, not --nfe 5; pass --nfe 4"):
        bench(BenchRequest(model="gmm", nfe=5, solver=str(path), backends=("pytorch",)))


def test_learning_cost_from_run_record(gmm, tmp_path):
    ws = Workspace.create(tmp_path / "ws", "gmm", gmm.identity_dict())
    req = BenchRequest(model="gmm", nfe=4, workdir=str(ws.root))
    found, _ = model_workspace(req, gmm)
    assert found.root == ws.root
    assert "no run record for gmm at NFE 4" in learning_cost(req, found)["skipped"]
    ws.report_path(4).parent.mkdir(parents=True)
    record = {"nfe": 4, "solver_file": str(tmp_path / "absent.json"), "wall_s": 12.5, "device": "cpu",
              "peak_memory": {"bytes": 3 * 2**20, "what": "process max RSS (getrusage)"},
              "validation": {"learned": 0.1}}
    ws.report_path(4).write_text(json.dumps(record))
    cost = learning_cost(req, found)
    assert (cost["wall_s"] == 12.5 and cost["peak_memory"]["bytes"] == 3 * 2**20
            and cost["source"] == str(ws.report_path(4)))


def test_workspace_of_another_model_is_not_used(gmm, tmp_path):
    other = dict(gmm.identity_dict(), weights_sha256="0" * 64)
    ws = Workspace.create(tmp_path / "ws", "gmm", other)
    req = BenchRequest(model="gmm", nfe=4, workdir=str(ws.root))
    found, why = model_workspace(req, gmm)
    assert found is None and "another model" in why
    assert why in learning_cost(req, found, why)["skipped"]


def test_onnxruntime_backend_side_by_side_with_guidance():
    """gmm-cond: class labels and the guidance scale reach both backends (guided graph, doubled batch)."""
    pytest.importorskip("onnxruntime")
    report = bench(BenchRequest(model="gmm-cond", nfe=3, batches=(1, 2), backends=("pytorch", "onnxruntime"), repeats=2,
                                warmup=1, workdir="/nonexistent-workspace"))
    ort_rows = [r for r in report["rows"] if r["backend"] == "onnxruntime"]
    assert [r["batch"] for r in ort_rows] == [1, 2] and "onnxruntime" not in report["skipped"]
    for r in ort_rows:
        assert math.isfinite(r["overhead"]) and r["overhead"] > 0 and r["vs_eager"] > 0


def _without_editable_install() -> str:
    """Python code that drops the editable-install finder, then runs benchmarks/gpu.py as on the GPU box."""
    return ("import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
            "sys.argv = ['benchmarks/gpu.py', *sys.argv[1:]]; runpy.run_path('benchmarks/gpu.py', run_name='__main__')")


def test_gpu_script_smoke_runs_from_the_source_tree(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "S4S_QUIET": "1"}
    env.pop("OUT", None)
    r = subprocess.run([sys.executable, "-c", _without_editable_install(), "--smoke", "--device", "cpu",
                        "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["machine"]["threads"] == 1
    sections = doc["sections"]
    assert list(sections) == ["latency", "precision", "learning", "compiled"]
    assert not [name for name, value in sections.items() if "error" in value]
    rows = sections["latency"]["rows"]
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["eager_loop"] > 0 and r["eager_denoiser_call"] > 0
        assert r["eager_overhead"] == pytest.approx(r["eager_loop"] / (3 * r["eager_denoiser_call"]), rel=2e-3)
    assert "CUDA" in sections["latency"]["skipped"]["cuda_graph"]
    prec = sections["precision"]  # fp16 convolutions (the exported fp16 graph's split) vs fp32
    assert 0 < prec["rmse"] <= prec["max_abs"] < 0.1 * prec["output_rms"]
    learning = sections["learning"]
    assert learning["method"] == "s4s-alt" and learning["wall_s_with_teacher"] >= learning["trainer_wall_s"] > 0
    assert learning["config"]["samples"] == 8 and learning["learned_val"] <= learning["base_val"] * (1 + 1e-6)
    assert "CUDA" in sections["compiled"]["skipped"]


def test_bench_cli_error_is_one_line():
    env = {**os.environ, "S4S_QUIET": "1"}
    r = subprocess.run([sys.executable, "-m", "s4s_export", "bench", "--model", "gmm", "--backend", "tpu"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == ("error: unknown backend 'tpu'; "
                                                      "choose from: pytorch, onnxruntime, tensorrt")


def test_tensorrt_reason_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(S4SError, match="TensorRT is not available.*pip install tensorrt"):
        tensorrt_fns(BenchRequest(model="gmm"), "dpmpp3m", Path("/nonexistent"), {1: None})
