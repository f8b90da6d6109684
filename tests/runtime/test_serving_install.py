"""The serving install (no `torch` extra): `sample`, `inspect` and `models` work; `learn` names the extra.

Each command runs in a fresh interpreter in which torch, scipy, onnxscript and safetensors cannot be
imported, as on a machine that ran `pip install s4s-export` without `[torch]`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

RUN = textwrap.dedent("""
    import sys

    class Absent:
        def find_spec(self, name, path=None, target=None):
            root = name.split(".")[0]
            if root in ("torch", "scipy", "onnxscript", "safetensors"):
                raise ModuleNotFoundError(f"No module named {root!r}", name=root)

    sys.meta_path.insert(0, Absent())
    sys.argv = ["s4s-export", *sys.argv[1:]]
    from s4s_export.cli import main
    main()
""")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=120)


def test_sample_and_inspect_need_no_torch(graphs, tmp_path):
    out = tmp_path / "grid.png"
    sampled = cli("sample", str(graphs["uncond"]), "--n", "4", "--out", str(out))
    assert sampled.returncode == 0, sampled.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    inspected = cli("inspect", str(graphs["uncond"]), "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert '"nfe"' in inspected.stdout
    listed = cli("models")
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout


@pytest.mark.parametrize("args", [["learn"], ["eval", "--model", "gmm", "--solver", "euler", "--nfe", "3"],
                                  ["build", "--model", "demo", "--solver", "euler", "--nfe", "3"]])
def test_torch_commands_name_the_extra(args, tmp_path):
    result = cli(*args, "--workdir", str(tmp_path / "ws")) if args[0] != "eval" else cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 's4s-export[torch]'" in lines[0]
