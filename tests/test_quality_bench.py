"""benchmarks/quality.py: learned files from several workspaces, every classical solver and schedule, the tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from s4s_export.errors import S4SError
from s4s_export.learn.base_select import candidate_solvers
from s4s_export.schedules import SCHEDULES
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver
from s4s_export.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import quality
    finally:
        sys.path.pop(0)
    return quality


def _workspace(root: Path, gmm, stand_ins: dict[int, tuple[str, str]]) -> Workspace:
    """A workspace whose 'learned' files are classical tables (same table, same noise: same number)."""
    ws = Workspace.create(root, "gmm", gmm.identity_dict())
    for nfe, (name, sched) in stand_ins.items():
        table = make_solver(name, nfe, sched, gmm.info.sigma_min, gmm.info.sigma_max)
        save_solver_file(ws.solver_path(nfe), SolverFile(table, {"method": "s4s-alt", "model": gmm.identity_dict()}))
    return ws


def _rows(text: str) -> list[list[str]]:
    return [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def test_tables_from_two_workspaces_against_every_solver_and_schedule(quality, gmm, tmp_path):
    a = _workspace(tmp_path / "a", gmm, {3: ("deis", "edm")})
    b = _workspace(tmp_path / "b", gmm, {4: ("ipndm", "logsnr")})
    doc = tmp_path / "page.md"
    doc.write_text("intro\n<!-- quality:gmm:begin -->\nold\n<!-- quality:gmm:end -->\noutro\n")
    quality.main(["--model", "gmm", "--workdir", str(a.root), "--workdir", str(b.root), "--nfe", "3,4",
                  "--samples", "4", "--metric", "rmse", "--write", str(doc)])
    text = doc.read_text()
    assert (text.startswith("intro\n<!-- quality:gmm:begin -->\nModel `gmm`")
            and text.endswith("<!-- quality:gmm:end -->\noutro\n"))
    assert "\nold\n" not in text and "--write" not in text and "<details>" in text
    assert f"NFE 3 from `{a.root}`; NFE 4 from `{b.root}`" in text
    rows = _rows(text)
    main = {int(r[0]): r[1:] for r in rows if r[0].isdigit()}  # NFE -> learned, best main, ratio, best any, ratio
    grid = {(r[0], r[1]): r[2:] for r in rows if not r[0].isdigit() and r[0] != "solver"}
    for nfe, col in ((3, 0), (4, 1)):
        classical = {k: float(v[col]) for k, v in grid.items() if k[1] != "learned" and v[col] != "-"}
        assert set(classical) == {(s, sc) for s in candidate_solvers(nfe) for sc in SCHEDULES}
        learned = float(grid[("s4s-alt (learned)", "learned")][col])
        on_main = {k: v for k, v in classical.items() if k[1] in ("edm", "logsnr")}
        best_main, best_any = min(on_main, key=on_main.get), min(classical, key=classical.get)
        row = main[nfe]
        assert float(row[0]) == learned
        assert row[1] == f"{grid[best_main][col]} ({best_main[0]}, {best_main[1]})"
        assert row[3] == f"{grid[best_any][col]} ({best_any[0]}, {best_any[1]})"
        assert float(row[2].rstrip("x")) == pytest.approx(learned / on_main[best_main], abs=0.006)
        assert float(row[4].rstrip("x")) == pytest.approx(learned / classical[best_any], abs=0.006)
    # the stand-ins are deis/edm at NFE 3 and ipndm/logsnr at NFE 4: same table, same noise, same number
    assert grid[("s4s-alt (learned)", "learned")] == [grid[("deis", "edm")][0], grid[("ipndm", "logsnr")][1]]


def test_one_nfe_in_two_workspaces_is_refused(quality, gmm, tmp_path):
    a = _workspace(tmp_path / "a", gmm, {3: ("deis", "edm")})
    b = _workspace(tmp_path / "b", gmm, {3: ("ipndm", "edm")})
    with pytest.raises(S4SError, match="NFE 3 has a learned solver file in both"):
        quality.learned_solvers([str(a.root), str(b.root)], [3], gmm.identity_dict())


def test_teacher_row_only_for_metrics_against_data(quality):
    rows = [{"solver": "s4s-alt (learned)", "schedule": "learned", "nfe": 3, "metrics": {"rmse_vs_teacher": 0.1,
                                                                                       "fd_digits": 2.0}},
            {"solver": "euler", "schedule": "edm", "nfe": 3, "metrics": {"rmse_vs_teacher": 0.4, "fd_digits": 5.0}},
            {"solver": "ipndm", "schedule": "time-quadratic", "nfe": 3,
             "metrics": {"rmse_vs_teacher": 0.2, "fd_digits": 6.0}},
            {"solver": "unipc3 NFE 20", "schedule": "teacher", "nfe": 3,
             "metrics": {"rmse_vs_teacher": 0.0, "fd_digits": 1.5}}]
    result = {"model": {"name": "demo", "weights_sha256": "0" * 64}, "teacher": "unipc3 NFE 20", "samples": 2,
              "nfes": [3], "workspaces": {3: "ws"}, "schedules": ["edm", "time-quadratic"],
              "machine": {"cpu_cores": 2, "cpu": "cpu", "gpu": None, "date_utc": "today"}, "skipped_metrics": {},
              "rows": rows}
    text = quality.markdown(result, "cmd")
    rmse, fd = text.split("**fd digits**")
    assert "| teacher |" not in rmse and "| unipc3 NFE 20 | teacher | 1.5 |" in fd
    assert "| 3 | 0.1 | 0.4 (euler, edm) | 0.25x | 0.2 (ipndm, time-quadratic) | 0.50x |" in rmse
    assert "| 3 | 2 | 5 (euler, edm) | 0.40x | 5 (euler, edm) | 0.40x |" in fd
    assert "the teacher's own samples: 1.5" in fd


def test_classical_rows_reused_from_earlier_json_files(quality, gmm, tmp_path):
    ws = _workspace(tmp_path / "ws", gmm, {4: ("ipndm", "logsnr")})
    args = ["--model", "gmm", "--samples", "4", "--metric", "rmse"]
    for nfe in (3, 4):
        quality.main([*args, "--nfe", str(nfe), "--json", str(tmp_path / f"nfe{nfe}.json")])
    again = tmp_path / "again.md"
    again.write_text("<!-- quality:gmm:begin -->\n<!-- quality:gmm:end -->\n")
    reuse = ["--reuse-classical", str(tmp_path / "nfe3.json"), "--reuse-classical", str(tmp_path / "nfe4.json")]
    quality.main([*args, "--nfe", "3,4", "--workdir", str(ws.root), *reuse, "--write", str(again)])
    text = again.read_text()
    command = next(line for line in text.splitlines() if line.startswith("Command:"))
    assert "Classical and teacher rows: measured by the same script" in text and "--reuse" not in command
    grid = {(r[0], r[1]): r[2:] for r in _rows(text) if not r[0].isdigit() and r[0] != "solver"}
    assert grid[("s4s-alt (learned)", "learned")] == ["-", grid[("ipndm", "logsnr")][1]]
    assert all(c != "-" for k, v in grid.items() if k[0] not in ("s4s-alt (learned)", "heun") for c in v)
    with pytest.raises(S4SError, match="measured for other settings"):
        quality.main(["--model", "gmm", "--samples", "5", "--metric", "rmse", "--nfe", "3", *reuse])
    with pytest.raises(S4SError, match="no file has NFE 5"):
        quality.main([*args, "--nfe", "3,5", *reuse])
