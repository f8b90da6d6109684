"""resolve_solver: classical names, solver files and a workspace's learned solver, with their provenance."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from s4s_export.errors import S4SError
from s4s_export.solver_ref import DEFAULT_NFE, resolve_solver, resolve_solvers
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver
from s4s_export.workspace import Workspace


def _table(gmm, name="ipndm", nfe=4):
    info = gmm.info
    return make_solver(name, nfe, "logsnr", info.sigma_min, info.sigma_max)


def test_classical_name_at_the_nfe_on_the_schedule(gmm):
    r = resolve_solver("dpmpp3m", denoiser=gmm, nfe=4, schedule="logsnr")
    assert np.array_equal(r.table.table, _table(gmm, "dpmpp3m").table) and r.label == "dpmpp3m"
    assert r.provenance == {"kind": "classical", "name": "dpmpp3m", **r.table.meta} and r.file_info == {}
    assert resolve_solver("euler", denoiser=gmm, nfe=None, schedule="edm").table.nfe == DEFAULT_NFE


def test_solver_file_with_its_digest_and_provenance(gmm, tmp_path):
    path = save_solver_file(tmp_path / "s.json",
                            SolverFile(_table(gmm), {"method": "s4s", "model": gmm.identity_dict()}))
    r = resolve_solver(str(path), denoiser=gmm, nfe=None, schedule="edm")
    assert r.table.nfe == 4 and r.label == str(path) and r.file_info["method"] == "s4s"
    assert r.provenance == {"kind": "file", "file": str(path),
                            "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert resolve_solver(str(path), denoiser=gmm, nfe=4, schedule="edm").table.nfe == 4
    with pytest.raises(S4SError, match=r"solver file .*s.json is for NFE 4, not --nfe 5; pass --nfe 4"):
        resolve_solver(str(path), denoiser=gmm, nfe=5, schedule="edm")


def test_solver_file_for_another_model_is_refused(gmm, tmp_path):
    other = {"name": "other", "weights_sha256": "0" * 64, "shape": [1, 8, 8]}
    path = save_solver_file(tmp_path / "o.json", SolverFile(_table(gmm), {"model": other}))
    with pytest.raises(S4SError, match="was learned for model 'other'"):
        resolve_solver(str(path), denoiser=gmm, nfe=None, schedule="edm")


def test_workspace_learned_solver_for_the_nfe(gmm, tmp_path):
    ws = Workspace.create(tmp_path / "ws", "gmm", gmm.identity_dict())
    save_solver_file(ws.solver_path(4), SolverFile(_table(gmm), {"method": "s4s-alt", "model": gmm.identity_dict()}))
    r = resolve_solver(None, denoiser=gmm, nfe=4, schedule="edm", workspace=ws)
    assert r.provenance["kind"] == "workspace" and r.provenance["workdir"] == str(ws.root)
    assert r.provenance["file"] == str(ws.solver_path(4)) and r.label == str(ws.solver_path(4))
    assert list(r.provenance) == ["kind", "workdir", "file", "file_sha256"]  # the sidecar's order
    with pytest.raises(S4SError, match="no learned solver for NFE 3 .*it has NFE 4"):
        resolve_solver(None, denoiser=gmm, nfe=3, schedule="edm", workspace=ws)
    with pytest.raises(S4SError, match="no solver named: pass --solver"):
        resolve_solver(None, denoiser=gmm, nfe=3, schedule="edm")


def test_unknown_name_lists_the_choices(gmm):
    with pytest.raises(S4SError, match=r"unknown solver 'rk4'; choose one of: euler.*a solver file path \(.json\)"):
        resolve_solver("rk4", denoiser=gmm, nfe=3, schedule="edm")


def test_several_solvers_classical_per_nfe_files_once(gmm, tmp_path):
    path = save_solver_file(tmp_path / "s.json", SolverFile(_table(gmm), {"model": gmm.identity_dict()}))
    got = resolve_solvers(["ipndm", str(path)], [3, 5], denoiser=gmm, schedule="logsnr")
    assert [(r.label, r.table.nfe) for r in got] == [("ipndm", 3), ("ipndm", 5), (str(path), 4)]
