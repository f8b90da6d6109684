"""Every command on bad input: exit 2, one `error:` line on stderr naming the problem, no traceback, and
nothing written (table-driven; the CLI runs in-process through `cli.run`, signals in a real process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s4s_export import cli
from s4s_export.contract import SIDECAR_FORMAT
from s4s_export.outputs import remove_stale_staging, staging_folder
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver

sys.path.insert(0, str(Path(__file__).parent / "runtime"))
from runtime_helpers import export_tiny  # noqa: E402

BAD_UTF8 = "bad\udcff"  # a file name that is not UTF-8, as Python hands it over (surrogate escape)
ROOT = os.geteuid() == 0  # root writes into folders without write permission

# command -> [(case id, argv after the command, words the error line must contain)]; placeholders:
# {w} the watched folder (also the working directory), {file} a file in it, {dir} a folder in it,
# {g} an unconditional graph, {c} a class-conditional graph (3 classes), {solver} a solver file.
CASES = {
    "build": [
        ("out is a folder named .onnx", ["--solver", "dpmpp3m", "--out", "{w}/x.onnx"], ["is an existing folder"]),
        ("out inside a file", ["--solver", "dpmpp3m", "--out", "{file}/m.onnx"], ["is a file, not a folder"]),
        ("out folder is a file", ["--solver", "dpmpp3m", "--out", "{file}"], ["is a file, not a folder"]),
        ("out not UTF-8", ["--solver", "dpmpp3m", "--out", f"{{w}}/{BAD_UTF8}.onnx"], ["not valid UTF-8"]),
        ("out folder not UTF-8", ["--solver", "dpmpp3m", "--out", f"{{w}}/{BAD_UTF8}"], ["not valid UTF-8"]),
        ("triton is a file", ["--solver", "dpmpp3m", "--out", "{w}/o", "--triton", "{file}"],
         ["--triton", "is a file"]),
        ("triton inside a file", ["--solver", "dpmpp3m", "--out", "{w}/o", "--triton", "{file}/t"], ["is a file"]),
        ("nfe huge", ["--solver", "euler", "--nfe", "1000000"], ["too large for one graph", "at most 64"]),
        ("nfe zero", ["--solver", "euler", "--nfe", "0"], ["--nfe"]),
        ("nfe not a number", ["--solver", "euler", "--nfe", "x"], ["--nfe"]),
        ("guidance nan", ["--solver", "euler", "--guidance-scale", "nan"],
         ["--guidance-scale must be a finite number"]),
        ("guidance huge", ["--solver", "euler", "--guidance-scale", "1e300"], ["[-100, 100]", "1e+300"]),
        ("guidance inf", ["--solver", "euler", "--guidance-scale", "-inf"], ["--guidance-scale"]),
        ("unknown model", ["--model", "nosuch", "--solver", "euler"], ["nosuch"]),
        ("checkpoint without model", ["--checkpoint", "x.pkl", "--solver", "euler"], ["go with --model"]),
        ("batch and range", ["--solver", "euler", "--batch", "2", "--batch-range", "1:4"], ["not both"]),
        ("batch range reversed", ["--solver", "euler", "--batch-range", "5:2"], ["MIN:MAX"]),
        ("unknown option", ["--solver", "euler", "--bogus"], ["--bogus"]),
        ("unknown precision", ["--model", "gmm", "--solver", "euler", "--precision", "fp8"], ["unknown precision"]),
        ("unknown output", ["--model", "gmm", "--solver", "euler", "--output", "rgb"], ["unknown output"]),
        ("out folder holds a folder of the graph's name",
         ["--model", "gmm", "--solver", "euler", "--nfe", "3", "--out", "{w}/o2"],
         ["gmm-euler-nfe3-fp32.onnx is an existing folder"]),
    ],
    "sample": [
        ("out is a folder", ["{g}", "--out", "{w}/y.png"], ["is an existing folder"]),
        ("out not a png", ["{g}", "--out", "{w}/p.txt"], ["must end in .png"]),
        ("out inside a file", ["{g}", "--out", "{file}/g.png"], ["is a file, not a folder"]),
        ("out not UTF-8", ["{g}", "--out", f"{{w}}/{BAD_UTF8}.png"], ["not valid UTF-8"]),
        ("singles is a file", ["{g}", "--out", "{w}/g.png", "--singles", "{file}"], ["--singles", "is a file"]),
        ("n beyond memory", ["{g}", "--out", "{w}/g.png", "--n", "100000000000"], ["needs", "use at most"]),
        ("n zero", ["{g}", "--out", "{w}/g.png", "--n", "0"], ["--n"]),
        ("seed negative", ["{g}", "--out", "{w}/g.png", "--seed", "-1"], ["--seed"]),
        ("seed beyond 64 bits", ["{g}", "--out", "{w}/g.png", "--seed", str(2**70)], ["--seed"]),
        ("labels overflow", ["{c}", "--out", "{w}/g.png", "--labels", "99999999999999999999999"], ["--labels"]),
        ("labels not numbers", ["{c}", "--out", "{w}/g.png", "--labels", "x"], ["--labels"]),
        ("labels out of range", ["{c}", "--out", "{w}/g.png", "--labels", "7"], ["out of range"]),
        ("labels missing", ["{c}", "--out", "{w}/g.png"], ["class-conditional"]),
        ("labels on unconditional", ["{g}", "--out", "{w}/g.png", "--labels", "1"], ["unconditional"]),
        ("guidance nan", ["{c}", "--out", "{w}/g.png", "--labels", "1", "--guidance-scale", "nan"], ["finite"]),
        ("guidance huge", ["{c}", "--out", "{w}/g.png", "--labels", "1", "--guidance-scale", "1e300"], ["[-100, 100]"]),
        ("unknown provider", ["{g}", "--out", "{w}/g.png", "--providers", "gpu"], ["provider"]),
        ("missing graph", ["{w}/none.onnx", "--out", "{w}/g.png"], ["does not exist"]),
        ("empty graph", ["{w}/empty.onnx", "--out", "{w}/g.png"], ["empty.onnx"]),
        ("wrong file type", ["{file}", "--out", "{w}/g.png"], ["unknown model file type"]),
        ("max batch zero", ["{g}", "--out", "{w}/g.png", "--max-batch", "0"], ["--max-batch"]),
    ],
    "eval": [
        ("plot is a folder", ["--model", "gmm", "--plot", "{w}/y.png"], ["is an existing folder"]),
        ("plot not a png", ["--model", "gmm", "--plot", "{w}/p.txt"], ["must end in .png"]),
        ("plot inside a file", ["--model", "gmm", "--plot", "{file}/p.png"], ["is a file, not a folder"]),
        ("plot not UTF-8", ["--model", "gmm", "--plot", f"{{w}}/{BAD_UTF8}.png"], ["not valid UTF-8"]),
        ("plot grid is a folder", ["--model", "gmm", "--plot", "{w}/z.png"], ["sample grid", "existing folder"]),
        ("samples beyond memory", ["--model", "gmm", "--samples", "1000000000000"], ["--samples", "use at most"]),
        ("samples zero", ["--model", "gmm", "--samples", "0"], ["--samples"]),
        ("samples not integer", ["--model", "gmm", "--samples", "1e9"], ["--samples"]),
        ("nfe zero", ["--model", "gmm", "--nfe", "0"], ["--nfe"]),
        ("nfe huge", ["--model", "gmm", "--nfe", "3,100000"], ["at most 1000"]),
        ("nfe text", ["--model", "gmm", "--nfe", "a,b"], ["comma-separated"]),
        ("batch zero", ["--model", "gmm", "--batch", "0"], ["--batch"]),
        ("unknown model", ["--model", "nosuch"], ["nosuch"]),
        ("checkpoint on a non-preset", ["--model", "gmm", "--checkpoint", "{file}"], ["checkpoint"]),
        ("unknown schedule", ["--model", "gmm", "--schedule", "nosuch"], ["schedule"]),
        ("config on a name", ["--model", "gmm", "--config", "{file}"], ["--config"]),
    ],
    "learn": [
        ("workdir is a file", ["--model", "gmm", "--workdir", "{file}"], ["is a file, not a folder"]),
        ("workdir inside a file", ["--model", "gmm", "--workdir", "{file}/ws"], ["is a file, not a folder"]),
        ("workdir not UTF-8", ["--model", "gmm", "--workdir", f"{{w}}/{BAD_UTF8}"], ["not valid UTF-8"]),
        ("lr nan", ["--model", "gmm", "--lr", "nan"], ["--lr must be a positive number"]),
        ("lr negative", ["--model", "gmm", "--lr", "-1"], ["--lr must be a positive number"]),
        ("lr zero", ["--model", "gmm", "--lr", "0"], ["--lr"]),
        ("time lr inf", ["--model", "gmm", "--time-lr", "inf"], ["--time-lr"]),
        ("radius nan", ["--model", "gmm", "--radius", "nan"], ["--radius"]),
        ("radius negative", ["--model", "gmm", "--radius", "-1"], ["--radius"]),
        ("seed beyond the noise seeds", ["--model", "gmm", "--seed", str(2**70)], ["--seed"]),
        ("seed negative", ["--model", "gmm", "--seed", "-1"], ["--seed"]),
        ("samples beyond memory", ["--model", "gmm", "--samples", "1000000000000"], ["use at most"]),
        ("samples zero", ["--model", "gmm", "--samples", "0"], ["--samples"]),
        ("nfe zero", ["--model", "gmm", "--nfe", "0"], ["--nfe"]),
        ("nfe huge", ["--model", "gmm", "--nfe", "1000000"], ["at most 1000"]),
        ("unknown model", ["--model", "nosuch"], ["nosuch"]),
        ("threads beyond the CPUs", ["--model", "gmm", "--threads", "100000"], ["--threads"]),
        ("unknown method", ["--model", "gmm", "--method", "nosuch"], ["nosuch"]),
    ],
    "bench": [
        ("batch zero", ["--model", "gmm", "--batch", "0"], ["--batch"]),
        ("batch text", ["--model", "gmm", "--batch", "x"], ["--batch"]),
        ("batch float", ["--model", "gmm", "--batch", "1e8"], ["--batch"]),
        ("batch beyond memory", ["--model", "gmm", "--batch", "1,1000000000000"], ["--batch", "use at most"]),
        ("batch empty", ["--model", "gmm", "--batch", ",,"], ["--batch"]),
        ("nfe zero", ["--model", "gmm", "--nfe", "0"], ["--nfe"]),
        ("nfe huge", ["--model", "gmm", "--nfe", "1000000"], ["at most 64"]),
        ("threads zero", ["--model", "gmm", "--threads", "0"], ["--threads"]),
        ("threads beyond the CPUs", ["--model", "gmm", "--threads", "100000"], ["--threads"]),
        ("repeats zero", ["--model", "gmm", "--repeats", "0"], ["--repeats"]),
        ("warmup negative", ["--model", "gmm", "--warmup", "-1"], ["--warmup"]),
        ("unknown model", ["--model", "nosuch"], ["nosuch"]),
        ("learn samples negative", ["--model", "gmm", "--learn-samples", "-1"], ["--learn-samples"]),
        ("learn samples beyond memory", ["--model", "gmm", "--learn-samples", "1000000000000"], ["use at most"]),
        ("no backend", ["--model", "gmm", "--backend", ","], ["--backend"]),
        ("checkpoint on a non-preset", ["--model", "gmm", "--checkpoint", "{file}"], ["checkpoint"]),
    ],
    "inspect": [
        ("missing file", ["{w}/none.json"], ["does not exist"]),
        ("missing graph", ["{w}/none.onnx"], ["does not exist"]),
        ("empty graph", ["{w}/empty.onnx"], ["empty (0 bytes)"]),
        ("garbage graph", ["{w}/garbage.onnx"], ["not a readable ONNX model"]),
        ("folder named .onnx", ["{w}/x.onnx"], ["folder without scheduler_config.json"]),
        ("plain folder", ["{dir}"], ["folder without scheduler_config.json"]),
        ("markup in a missing path", ["{w}/a[/b].json"], ["a[/b].json", "does not exist"]),
        ("not JSON", ["{file}"], ["afile.txt"]),
        ("empty JSON file", ["{w}/empty.json"], ["empty.json"]),
        ("JSON list", ["{w}/list.json"], ["not an s4s-export solver file"]),
        ("other JSON format", ["{w}/other.json"], ["not an s4s-export solver file", "other"]),
        ("not UTF-8 JSON", ["{w}/latin1.json"], ["latin1.json"]),
        ("solver file of a newer version", ["{w}/v99.json"], ["version 99"]),
        ("missing with --json", ["{w}/none.json", "--json"], ["does not exist"]),
        ("no path", [], ["Missing argument", "s4s-export inspect --help"]),
        ("unknown option", ["{solver}", "--bogus"], ["--bogus"]),
    ],
    "export-scheduler": [
        ("out is a file", ["{solver}", "--out", "{file}"], ["--out", "is a file"]),
        ("out inside a file", ["{solver}", "--out", "{file}/s"], ["is a file"]),
        ("out not UTF-8", ["{solver}", "--out", f"{{w}}/{BAD_UTF8}"], ["not valid UTF-8"]),
        ("missing solver file", ["{w}/none.json", "--out", "{w}/s"], ["does not exist"]),
        ("not a solver file", ["{w}/other.json", "--out", "{w}/s"], ["not an s4s-export solver file"]),
        ("solver of no diffusers model", ["{solver}", "--out", "{w}/s"], ["does not name a diffusers model"]),
        ("no out", ["{solver}"], ["--out"]),
    ],
    "models": [
        ("extra argument", ["extra"], ["extra"]),
        ("unknown option", ["--bogus"], ["--bogus"]),
    ],
    "": [
        ("unknown command", ["nosuch"], ["nosuch"]),
        ("unknown top-level option", ["--bogus"], ["--bogus"]),
    ],
}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("graphs")
    return {"g": str(export_tiny(d / "u.onnx")), "c": str(export_tiny(d / "c.onnx", num_classes=3))}


@pytest.fixture
def watched(tmp_path, monkeypatch, graphs) -> dict[str, str]:
    """A folder of files no bad command may touch; also the working directory (default outputs land there)."""
    w = tmp_path / "w"
    for folder in ("adir", "x.onnx", "y.png", "z-samples.png", "o2/gmm-euler-nfe3-fp32.onnx"):
        (w / folder).mkdir(parents=True)
    (w / "afile.txt").write_text("not json [/b]\n")
    (w / "empty.onnx").write_bytes(b"")
    (w / "empty.json").write_bytes(b"")
    (w / "garbage.onnx").write_bytes(b"\x00\xff not a protobuf \xff" * 10)
    (w / "list.json").write_text("[1, 2]")
    (w / "other.json").write_text(json.dumps({"format": "other"}))
    (w / "latin1.json").write_bytes('{"format": "caf\xe9"}'.encode("latin-1"))
    solver = w / "euler.json"
    save_solver_file(solver, SolverFile(make_solver("euler", 3, "edm", 0.002, 80.0), {"method": "classical"}))
    doc = json.loads(solver.read_text())
    (w / "v99.json").write_text(json.dumps({**doc, "version": 99}))
    monkeypatch.chdir(w)
    monkeypatch.setenv("S4S_QUIET", "1")
    return {"w": str(w), "file": str(w / "afile.txt"), "dir": str(w / "adir"), "solver": str(solver), **graphs}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.run(argv)
    out, err = capsys.readouterr()
    return code, out, err


TABLE = [(command, *case) for command, cases in CASES.items() for case in cases]


@pytest.mark.parametrize("command,case,args,words", TABLE, ids=[f"{c or 'top'}: {k}" for c, k, _, _ in TABLE])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(command, case, args, words, watched, capsys):
    argv = ([command] if command else []) + [a.format(**watched) for a in args]
    before = snapshot(Path(watched["w"]))
    code, out, err = run_cli(argv, capsys)
    assert code == 2, f"{case}: exit {code}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: {err!r}"
    assert "Traceback" not in out + err
    for word in words:
        assert word.format(**watched) in lines[0], f"{case}: {word!r} not in {lines[0]!r}"
    assert snapshot(Path(watched["w"])) == before, f"{case}: the watched folder changed"


def test_every_command_has_at_least_15_cases():
    for command in ("build", "sample", "eval", "learn", "bench", "inspect"):
        assert len(CASES[command]) >= 15, command


@pytest.mark.parametrize("argv", [["build", "--solver", "euler", "--out", "{ro}/m.onnx"],
                                  ["sample", "{g}", "--out", "{ro}/g.png"],
                                  ["eval", "--model", "gmm", "--plot", "{ro}/p.png"],
                                  ["learn", "--model", "gmm", "--workdir", "{ro}/ws"]])
def test_unwritable_folder(argv, watched, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if ROOT:  # root may write anywhere: the folder answers as it would to anyone else
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and Path(p) != ro)
    code, _, err = run_cli([a.format(ro=ro, **watched) for a in argv], capsys)
    assert code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1


def test_inspect_prints_markup_and_the_sidecar_as_text(watched, graphs, capsys, tmp_path):
    odd = tmp_path / "a[/b]"
    odd.mkdir(parents=True)
    solver = odd / "s[/b].json"
    save_solver_file(solver, SolverFile(make_solver("euler", 3, "edm", 0.002, 80.0), {"method": "[/b] [bold]x"}))
    code, out, err = run_cli(["inspect", str(solver)], capsys)
    assert code == 0, err
    assert str(solver) in out and "[/b] [bold]x" in out
    sidecar = tmp_path / "m.json"  # as `s4s-export build` writes it beside m.onnx
    sidecar.write_text(json.dumps({"format": SIDECAR_FORMAT, "version": 1, "nfe": 3, "onnx": "m.onnx",
                                   "solver": {"name": "[/b]euler"}}))
    code, out, err = run_cli(["inspect", str(sidecar)], capsys)
    assert code == 0 and SIDECAR_FORMAT in out and "[/b]euler" in out, err


def test_inspect_describes_a_graph_with_a_sequence_input(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    seq = helper.make_value_info("xs",
                                 helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("SequenceAt", ["xs", "i"], ["y"])], "g",
                              [seq, helper.make_tensor_value_info("i", TensorProto.INT64, [])], [out])
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(graph), str(path))
    code, out_text, err = run_cli(["inspect", str(path), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out_text)["inputs"][0] == {"name": "xs", "type": "sequence"}


def test_unexpected_error_is_one_line_pointing_at_debug(monkeypatch, capsys):
    from s4s_export.commands import models

    def boom(json_out: bool = False) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(models, "models", boom)
    code, _, err = run_cli(["models"], capsys)
    assert code == 1 and err == "error: unexpected RuntimeError: disk on fire second line; rerun with --debug for " \
                                "the traceback and report it\n"
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.run(["models", "--debug"])


def test_debug_keeps_bad_input_to_one_line(watched, capsys):
    code, _, err = run_cli(["--debug", "sample", watched["w"] + "/none.onnx", "--out", watched["w"] + "/g.png"], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1


def test_version(capsys):
    from s4s_export import __version__

    assert run_cli(["--version"], capsys)[:2] == (0, f"s4s-export {__version__}\n")


def test_stale_staging_folders_of_dead_builds_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".m.onnx.pid{dead.pid}.abc123.staging"
    stale.mkdir()
    (stale / "m.onnx").write_bytes(b"x" * 100)
    live = tmp_path / f".m.onnx.pid{os.getppid()}.def456.staging"  # a running process (pytest's parent)
    live.mkdir()
    unrelated = tmp_path / ".m.onnx.other"
    unrelated.mkdir()
    fresh = staging_folder(tmp_path / "m.onnx")
    assert not stale.exists() and live.is_dir() and unrelated.is_dir() and fresh.is_dir()
    assert f".pid{os.getpid()}." in fresh.name
    assert remove_stale_staging(tmp_path) == []  # our own staging folder stays


def test_interrupt_while_starting_is_one_line(tmp_path):
    """SIGINT while the CLI imports its commands (the first half second): `interrupted`, exit 130, no traceback."""
    # `go` once s4s_export.cli is imported (a few ms, the console script's own window, which no handler can cover)
    # Python installs its KeyboardInterrupt handler only where SIGINT is not ignored: a test run started in the
    # background by a non-interactive shell (`cmd &`, nohup) ignores it, and children inherit that. The script
    # installs it as a terminal session has it.
    script = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "from s4s_export.cli import main; sys.stderr.write('go\\n'); sys.stderr.flush(); main()")
    # eval imports the commands (0.65 s), then torch, then samples: every delay lands while it still runs (a
    # signal during the interpreter's own shutdown, after a command has finished, cannot be caught by anyone)
    command = ["eval", "--model", "gmm", "--solver", "euler", "--nfe", "3", "--samples", "8"]
    for delay in (0.02, 0.1, 0.3):
        p = subprocess.Popen([sys.executable, "-c", script, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=tmp_path)
        assert p.stderr.readline() == b"go\n"  # the interpreter is up; our imports start now
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 130 and err.decode() == "interrupted\n", err.decode()
        assert b"Traceback" not in out + err
