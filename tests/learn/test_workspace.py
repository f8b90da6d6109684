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
    with pytest.raises(S4SError, match=r"no learned solver for NFE 5 .*it has no solvers yet.*learn --model gmm --nfe 5"):
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
