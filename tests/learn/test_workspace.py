"""The workspace: model record, solver lookup with helpful errors, one model per workspace."""

import pytest

from s4s_export.errors import S4SError
from s4s_export.workspace import Workspace

IDENTITY = {"name": "gmm", "weights_sha256": "ab" * 32, "shape": [1, 8, 8]}


def test_open_without_workspace_says_what_to_do(tmp_path):
    with pytest.raises(S4SError, match="run `s4s-export learn` first, or pass --workdir"):
        Workspace.open(tmp_path / "nothing")


def test_create_records_model_and_finds_solvers(tmp_path, gmm):
    ws = Workspace.create(tmp_path, "gmm", gmm.identity_dict())
    opened = Workspace.open(tmp_path)
    assert opened.model_name == "gmm" and opened.model_record["identity"] == gmm.identity_dict()
    assert opened.model_record["checkpoint"] is None and opened.model_record["random_weights"] is False
    assert opened.load_model().identity() == gmm.identity()
    with pytest.raises(S4SError, match=r"no learned solver for NFE 5 .*it has no solvers yet"
                                       r".*learn --model gmm --nfe 5"):
        ws.find_solver(5)
    for nfe in (4, 6):
        ws.solver_path(nfe).parent.mkdir(parents=True, exist_ok=True)
        ws.solver_path(nfe).write_text("{}")
    assert ws.find_solver(6) == tmp_path / "solvers" / "nfe6.json"
    with pytest.raises(S4SError, match="it has NFE 4, 6"):
        ws.find_solver(5)


def test_one_model_per_workspace(tmp_path):
    Workspace.create(tmp_path, "gmm", IDENTITY)
    Workspace.create(tmp_path, "gmm", IDENTITY)  # same model: fine
    with pytest.raises(S4SError, match="holds solvers for model 'gmm'.*pass --workdir"):
        Workspace.create(tmp_path, "gmm", {**IDENTITY, "weights_sha256": "cd" * 32})


def test_damaged_model_record(tmp_path):
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(S4SError, match="not a valid workspace model record"):
        Workspace.open(tmp_path)


def test_lock_names_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    import subprocess
    import sys

    ws = Workspace(tmp_path / "ws")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ws.root.mkdir()
        (ws.root / "learn.lock").write_text(f"{holder.pid}\n")
        with pytest.raises(S4SError, match=rf"in use by another learn run \(pid {holder.pid}"), ws.lock():
            pass
        assert (ws.root / "learn.lock").read_text() == f"{holder.pid}\n"  # not ours: left alone
    finally:
        holder.kill()
        holder.wait()
    with ws.lock():  # the holder is gone: a stale lock is taken over
        assert (ws.root / "learn.lock").read_text().split() == [str(__import__("os").getpid())]
        other = Workspace(ws.root)
        (ws.root / "learn.lock").write_text("1\n")  # pid 1 is alive: a second run is refused
        with pytest.raises(S4SError, match=r"pid 1\b"), other.lock():
            pass
        (ws.root / "learn.lock").unlink()
    assert not (ws.root / "learn.lock").exists()
