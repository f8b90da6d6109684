"""`s4s-export learn`, `inspect` and `eval` with solver files, through the command line (in process, plus one real
process)."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from s4s_export.cli import app
from s4s_export.errors import S4SError

TINY = ["--model", "gmm", "--teacher", "unipc3:12:logsnr", "--samples", "12", "--batch", "6", "--val-samples", "8",
        "--distance", "pseudo-huber"]


class Result:
    def __init__(self, r):
        self.returncode = 2 if isinstance(r.exception, S4SError) else r.exit_code
        if r.exception is not None and not isinstance(r.exception, (S4SError, SystemExit)):
            raise r.exception
        self.stdout, self.stderr = r.stdout, r.stderr + (f"error: {r.exception}\n" if isinstance(r.exception, S4SError)
                                                         else "")


def run_cli(*args: str) -> Result:
    """Run a command in this process; an S4SError counts as exit 2, as `main()` makes it."""
    return Result(CliRunner().invoke(app, list(args)))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    r = run_cli("learn", *TINY, "--method", "s4s", "--epochs", "1", "--nfe", "3,4", "--workdir", str(ws))
    assert r.returncode == 0, r.stderr
    assert "base val" in r.stdout and "learned val" in r.stdout  # the closing table
    assert "distance pseudo-huber" in r.stderr  # says which distance ran
    return ws


def test_learn_writes_workspace(workspace):
    assert json.loads((workspace / "model.json").read_text())["name"] == "gmm"
    assert (workspace / "solvers" / "nfe3.json").is_file() and (workspace / "solvers" / "nfe4.json").is_file()
    assert list((workspace / "teacher").glob("*.safetensors"))


def test_inspect_solver_file(workspace):
    path = str(workspace / "solvers" / "nfe4.json")
    r = run_cli("inspect", path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(run_cli("inspect", path, "--json").stdout)
    for text in ("s4s (NFE 4)", doc["base"]["solver"], "pseudo-huber", "validation", "best classical", "table"):
        assert text in r.stdout
    assert doc["solver"]["nfe"] == 4 and doc["order_cap"] == 3 and doc["teacher"]["solver"] == "unipc3"
    assert doc["validation"]["learned"] <= doc["validation"]["base"]
    assert len(doc["parameters"]["coefficients"]) == 4 and doc["versions"]["torch"]


def test_eval_accepts_solver_files(workspace):
    path = str(workspace / "solvers" / "nfe3.json")
    r = run_cli("eval", "--model", "gmm", "--solver", f"{path},dpmpp3m", "--nfe", "3,4", "--samples", "4", "--json")
    assert r.returncode == 0, r.stderr
    rows = [(e["solver"], e["nfe"]) for e in json.loads(r.stdout)["results"]]
    assert rows == [(path, 3), ("dpmpp3m", 3), ("dpmpp3m", 4)]  # the file once, at its own NFE


def test_eval_refuses_a_solver_file_for_another_model(workspace, tmp_path):
    doc = json.loads((workspace / "solvers" / "nfe3.json").read_text())
    doc["model"]["weights_sha256"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    r = run_cli("eval", "--model", "gmm", "--solver", str(other), "--samples", "2")
    assert r.returncode == 2 and "was learned for model" in r.stderr and "Traceback" not in r.stderr


def test_resume_of_a_finished_run_is_instant_and_keeps_the_file(workspace):
    before = (workspace / "solvers" / "nfe3.json").read_bytes()
    r = run_cli("learn", *TINY, "--method", "s4s", "--epochs", "1", "--nfe", "3", "--workdir", str(workspace),
                "--resume")
    assert r.returncode == 0, r.stderr
    assert (workspace / "solvers" / "nfe3.json").read_bytes() == before
    assert "generating" not in r.stderr  # the teacher cache is reused


def test_real_process_one_line_error():
    env = {**os.environ, "S4S_QUIET": "1"}
    r = subprocess.run([sys.executable, "-m", "s4s_export", "inspect", "missing.json"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["learn", "--model", "gmm", "--method", "nope"], "unknown method 'nope'"),
    (["learn", "--model", "gmm", "--distance", "ssim"], "unknown distance 'ssim'"),
    (["learn", "--model", "gmm", "--base", "heun", "--nfe", "5"], "must evaluate once per step"),
    (["learn", "--model", "gmm", "--method", "s4s", "--offsets"], "--offsets learns evaluation times"),
    (["learn", "--model", "gmm", "--teacher", "unipc3"], "bad teacher"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    r = run_cli(*args, *(["--workdir", str(tmp_path)] if args[0] == "learn" else []))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_inspect_exported_graph(workspace, tmp_path):
    """learn -> build (finds the workspace's solver) -> inspect the .onnx."""
    out = tmp_path / "g.onnx"
    r = run_cli("build", "--workdir", str(workspace), "--nfe", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(run_cli("inspect", str(out), "--json").stdout)
    assert doc["nfe"] == 3 and doc["solver"]["name"] == "s4s"
    assert run_cli("inspect", str(out)).returncode == 0
