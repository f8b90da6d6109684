"""`s4s-export build` from the command line: workspace solvers, refusals, option errors, --trt and --triton."""

import json
import sys
import types

import pytest

from s4s_export import cli
from s4s_export.gmm import digits_gmm
from s4s_export.runtime import cuda
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver
from s4s_export.workspace import Workspace


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["s4s-export", "build", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_builds_the_workspace_solver_for_the_nfe(monkeypatch, capsys, tmp_path):
    gmm = digits_gmm()
    ws = Workspace.create(tmp_path / "ws", "gmm", gmm.identity_dict())
    learned = SolverFile(make_solver("dpmpp2m", 2, "logsnr"), {"method": "s4s-alt", "model": gmm.identity_dict(),
                                                               "validation": {"learned_rmse": 0.1}})
    save_solver_file(ws.solver_path(2), learned)
    code, out, err = run(monkeypatch, capsys, "--nfe", "2", "--workdir", str(ws.root),
                         "--out", str(tmp_path / "g.onnx"), "--batch", "2", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"]["name"] == "gmm" and doc["nfe"] == 2 and doc["batch_range"] == [2, 2]
    assert doc["solver"]["source"]["kind"] == "workspace" and doc["provenance"]["learned"]["method"] == "s4s-alt"
    assert doc["verification"]["ok"] and (tmp_path / "g.onnx").is_file() and (tmp_path / "g.json").is_file()
    code, _, err = run(monkeypatch, capsys, "--nfe", "3", "--workdir", str(ws.root))
    assert code == 2 and "no learned solver for NFE 3" in err and "Traceback" not in err


def test_refuses_a_solver_file_for_another_model(monkeypatch, capsys, tmp_path):
    other = {"name": "other", "weights_sha256": "0" * 64, "shape": [1, 8, 8]}
    path = save_solver_file(tmp_path / "other.json", SolverFile(make_solver("dpmpp3m", 3), {"model": other}))
    code, out, err = run(monkeypatch, capsys, "--model", "gmm", "--solver", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "was learned for model 'other'" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,message", [
    (["--workdir", "/nonexistent/ws"], "no s4s-export workspace at /nonexistent/ws"),
    (["--batch", "4", "--batch-range", "1:8"], "either --batch N (static) or --batch-range"),
    (["--batch-range", "8:2"], "--batch-range takes MIN:MAX with 1 <= MIN <= MAX"),
    (["--model", "gmm", "--solver", "euler", "--precision", "fp16"], "--precision fp16 needs an EDM network"),
    (["--model", "gmm", "--solver", "euler", "--output", "png"], "unknown output 'png'; choose one of: float, uint8"),
    (["--model", "gmm", "--solver", "rk4"], "unknown solver 'rk4'"),
    (["--model", "gmm", "--solver", "dpmpp3m", "--nfe", "2"], "needs NFE >= 3"),
])
def test_option_errors_are_one_line(monkeypatch, capsys, tmp_path, args, message):
    code, _, err = run(monkeypatch, capsys, *args, "--out", str(tmp_path))
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


TINY = ("--model", "tiny", "--solver", "euler", "--nfe", "1")


@pytest.mark.parametrize("missing,message", [
    ("tensorrt", "TensorRT is not available"),
    ("cuda-python", "TensorRT execution needs cuda-python"),
    ("gpu", "no usable NVIDIA GPU here (no devices)"),
])
def test_trt_is_checked_before_the_export(monkeypatch, capsys, tmp_path, missing, message):
    if missing == "tensorrt":
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    if missing == "cuda-python":
        monkeypatch.setitem(sys.modules, "cuda", None)
        monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    if missing == "gpu":
        monkeypatch.setattr(cuda, "import_cudart", lambda: types.SimpleNamespace(cudaGetDeviceCount=lambda: (0, 0)))
    code, out, err = run(monkeypatch, capsys, *TINY, "--out", str(tmp_path), "--trt")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert "install" in err or "onnxruntime" in err  # names the fix
    assert out == "" and list(tmp_path.iterdir()) == []  # stopped before tracing: no .onnx


def test_triton_repository_is_written(monkeypatch, capsys, tmp_path):
    repo = tmp_path / "repo"
    code, out, err = run(monkeypatch, capsys, *TINY, "--batch-range", "1:4", "--out", str(tmp_path / "g"),
                         "--triton", str(repo))
    assert code == 0, err
    graph = tmp_path / "g" / "tiny-euler-nfe1-fp32.onnx"
    assert f"wrote Triton model repository {repo}" in out
    assert [p.name for p in repo.iterdir()] == [graph.stem]
    assert (repo / graph.stem / "1" / "model.onnx").read_bytes() == graph.read_bytes()
    config = (repo / graph.stem / "config.pbtxt").read_text()
    assert f'name: "{graph.stem}"' in config and 'platform: "onnxruntime_onnx"' in config
    assert "max_batch_size: 4" in config and "dynamic_batching" in config and "dims: [ 1, 8, 8 ]" in config
