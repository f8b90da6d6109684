"""Malformed solver files: every one is exit 2 and one line on stderr (no traceback) from `s4s-export inspect`
and `s4s-export build --solver`, naming the file and the problem; a well-formed file still loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from s4s_export.solverfile import SolverFile, load_solver_file, save_solver_file
from s4s_export.solvers import make_solver


def _good() -> dict:
    sf = SolverFile(make_solver("dpmpp3m", 3), {"method": "classical", "model": {}, "versions": {"python": "3"}})
    return json.loads(sf.to_json())


def _set(path: tuple, value: object) -> bytes:
    """The good file with the field at `path` set to `value`."""
    doc = _good()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _replace(old: str, new: str) -> bytes:
    """The good file's text with `old` replaced (literals JSON cannot write: NaN, 1e999, huge integers)."""
    text = json.dumps(_good())
    assert old in text
    return text.replace(old, new, 1).encode()


def _without_table() -> bytes:
    doc = _good()
    del doc["solver"]["table"]
    return json.dumps(doc).encode()


NESTED = {"format": "s4s-export.solver", "version": 1, "notes": json.loads("[" * 100 + "]" * 100)}
GOOD = json.dumps(_good()).encode()
MODEL = {"name": "gmm", "weights_sha256": "ab"}
# name -> (file bytes, words the one-line error must contain)
CASES: dict[str, tuple[bytes, str]] = {
    "non-utf8": (b"\xff\xfe" + GOOD, "not UTF-8 text (byte 0xff at offset 0)"),
    "latin1 in a string": (_set(("solver", "name"), "caf\u00e9").decode().encode("latin-1"), "not UTF-8 text"),
    "nested 200k deep": (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    "nested 100 deep": (json.dumps(NESTED).encode(), "nested more than 32 levels"),
    "truncated": (GOOD[:-20], "invalid JSON"),
    "empty": (b"", "invalid JSON"),
    "top-level list": (b"[1, 2]", "not an s4s-export solver file"),
    "version string": (_set(("version",), "1"), "solver-file version '1'"),
    "huge integer": (_replace('"nfe": 3', '"nfe": ' + "9" * 5000), "holds an integer with thousands of digits"),
    "solver a number": (_set(("solver",), 3), "`solver` must be an object"),
    "no table": (_without_table(), "`solver` lacks table"),
    "name a number": (_set(("solver", "name"), 5), "solver name must be a non-empty string"),
    "eval_sigmas a string": (_set(("solver", "eval_sigmas"), "abc"), "eval_sigmas must be a list"),
    "eval_sigmas with true": (_set(("solver", "eval_sigmas"), [80.0, True, 0.5]),
                              "eval_sigmas must be a list of numbers"),
    "nfe disagrees": (_set(("solver", "nfe"), 8), "nfe is 8 but eval_sigmas holds 3"),
    "eval_sigmas too few": (_set(("solver", "eval_sigmas"), [80.0, 9.7]), "nfe is 3 but eval_sigmas holds 2"),
    "table too few rows": (_set(("solver", "table"), [[1, 0, 0, 0]] * 3), "table must be a list of 4 rows"),
    "ragged table": (_set(("solver", "table", 2), [0.1, 0.2]), "table row 2 must hold 4 numbers, got 2"),
    "table a string": (_set(("solver", "table"), "identity"), "table must be a list of 4 rows"),
    "string in table": (_set(("solver", "table", 1, 0), "x"), "table row 1 must be a list of numbers"),
    "upper triangle": (_set(("solver", "table", 0, 3), 0.5), "lower-triangular"),
    "sigmas too short": (_set(("solver", "sigmas"), [80.0]), "sigmas holds 1 values; a step grid for NFE 3"),
    "sigmas too long": (_set(("solver", "sigmas"), [80.0, 20.0, 9.0, 1.0, 0.1, 0.002]), "sigmas holds 6 values"),
    "sigmas increasing": (_set(("solver", "sigmas"), [0.002, 1.0, 80.0]), "strictly decreasing"),
    "NaN in table": (_replace("0.12154001694075164", "NaN"), "table row 1 must be finite"),
    "Infinity in eval_sigmas": (_replace('"eval_sigmas": [80.0', '"eval_sigmas": [Infinity'),
                                "evaluation sigmas must be finite"),  # +inf only in a flow table
    "1e999 in sigmas": (_replace('"sigmas": [80.0', '"sigmas": [1e999'), "solver sigmas must be finite and positive"),
    "negative eval sigma": (_set(("solver", "eval_sigmas"), [80.0, -1.0, 0.5]), "sigmas positive"),
    "meta a list": (_set(("solver", "meta"), [1]), "solver meta must be an object"),
    "model a string": (_set(("model",), "gmm"), "`model` must be an object"),
    "model shape a number": (_set(("model",), {**MODEL, "shape": 3}),
                             "model shape must be a list of positive integers"),
    "model shape with 0": (_set(("model",), {**MODEL, "shape": [1, 0, 8]}), "model shape must be a list of positive"),
    "model name missing": (_set(("model",), {"weights_sha256": "ab", "shape": [1, 8, 8]}),
                           "model must have a string name and weights_sha256"),
    "teacher a string": (_set(("teacher",), "heun"), "`teacher` must be an object"),
    "schedule a number": (_set(("schedule",), 3), "schedule must be a name or a list of sigmas"),
}

HARNESS = textwrap.dedent("""
    import io, json, sys, traceback
    from s4s_export.cli import main

    results, out = {}, sys.argv[2]
    for name, args in json.loads(sys.argv[1]).items():  # results go to the file sys.argv[2]
        sys.argv, err, code = ["s4s-export", *args], io.StringIO(), None
        sys.stderr = err
        try:
            main()
        except SystemExit as e:
            code = e.code
        except BaseException:
            err.write(traceback.format_exc())
        finally:
            sys.stderr = sys.__stderr__
        results[name] = [code, err.getvalue()]
    with open(out, "w") as f:
        json.dump(results, f)
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("solver-files")
    out = {}
    for i, (name, (data, _)) in enumerate(CASES.items()):
        out[name] = d / f"bad{i}.json"
        out[name].write_bytes(data)
    return out


@pytest.fixture(scope="module")
def results(files) -> dict[str, list]:
    """Every bad file through the CLI's entry point (`s4s_export.cli.main`, as the console script runs it) for
    `inspect` and `build --solver`, in one fresh interpreter: {"inspect/<case>": [exit code, stderr]}."""
    calls = {}
    for name, path in files.items():
        calls[f"inspect/{name}"] = ["inspect", str(path)]
        calls[f"build/{name}"] = ["build", "--model", "gmm", "--solver", str(path), "--out", str(path.parent / "out")]
    out = next(iter(files.values())).parent / "results.json"
    result = subprocess.run([sys.executable, "-c", HARNESS, json.dumps(calls), str(out)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "S4S_QUIET": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("command", ["inspect", "build"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_solver_file_is_one_line_exit_2(results, files, command, case):
    code, stderr = results[f"{command}/{case}"]
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert code == 2 and stderr.startswith(f"error: {files[case]} ") and CASES[case][1] in stderr, stderr
    assert not (files[case].parent / "out").exists()  # nothing half-written


@pytest.mark.parametrize("command,case", [("inspect", "nested 200k deep"), ("build", "non-utf8")])
def test_console_script_gives_one_line(files, command, case):
    """The installed console script itself (not the harness) on two of the files."""
    args = (["inspect", str(files[case])] if command == "inspect"
            else ["build", "--model", "gmm", "--solver", str(files[case]), "--out", str(files[case].parent)])
    result = subprocess.run([sys.executable, "-m", "s4s_export", *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "S4S_QUIET": "1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and CASES[case][1] in result.stderr


def test_well_formed_file_still_loads(tmp_path):
    path = save_solver_file(tmp_path / "ok.json", SolverFile(make_solver("heun", 5), {"method": "classical"}))
    sf = load_solver_file(path)
    assert sf.solver.nfe == 5 and len(sf.solver.sigmas) == 4  # Heun: 3 steps for 5 evaluations
    doc = json.loads(path.read_text())
    doc["history"] = [{"val": float("nan")}]  # learning records a diverged epoch's NaN; provenance is not read
    path.write_text(json.dumps(doc))
    assert "NaN" in path.read_text() and load_solver_file(path).info["history"][0]["val"] != 0
