"""`--base auto` (learn/base_select.py): every classical solver on every schedule, scored as initialised."""

import json

import pytest

from s4s_export.errors import S4SError
from s4s_export.learn.base_select import (
    AUTO,
    BaseRequest,
    candidate_solvers,
    score_candidates,
    select_base,
)
from s4s_export.learn.config import TrainConfig
from s4s_export.learn.pipeline import LearnRequest, learn
from s4s_export.learn.student import StudentConfig
from s4s_export.schedules import SCHEDULES
from s4s_export.solverfile import load_solver_file
from s4s_export.solvers import SOLVERS, SolverTable
from s4s_export.teacher import TeacherSpec


def test_parse_requests():
    assert BaseRequest.parse("auto").auto
    assert BaseRequest.parse("dpmpp3m") == BaseRequest("dpmpp3m")
    assert BaseRequest.parse("unipc:logsnr") == BaseRequest("unipc", "logsnr")
    assert BaseRequest.parse("euler:80,1,0.002") == BaseRequest("euler", (80.0, 1.0, 0.002))
    with pytest.raises(S4SError, match="base solver"):
        BaseRequest.parse("nope")
    with pytest.raises(S4SError, match="no schedule"):
        BaseRequest.parse("auto:edm")


def test_candidates_spend_exactly_the_nfe():
    assert "heun" in candidate_solvers(5) and "heun" not in candidate_solvers(4)
    assert "dpmpp3m" not in candidate_solvers(2) and candidate_solvers(1) == ["euler"]


def fake_score(calls):
    """A deterministic score that favours heun, then ipndm's fitted table, and logs what was scored."""
    rank = {name: i for i, name in enumerate(SOLVERS)}

    def score(table: SolverTable) -> dict:
        calls.append(table.name)
        d = (0.1 if table.name == "heun" else 0.3 if table.name == "ipndm as initialised"
             else 1.0 + rank.get(table.name, 0))
        d += 0.01 * float(table.sigmas[1])  # schedules differ
        return {"distance": d, "rmse": d / 2}

    return score


def test_ranking_scores_least_squares_bases_as_initialised():
    calls = []
    cands = score_candidates(5, StudentConfig(5), 0.002, 80.0, fake_score(calls))
    assert len(cands) == len(candidate_solvers(5)) * len(SCHEDULES)
    heun = [c for c in cands if c.solver == "heun"]
    assert all(not c.is_base and c.init == "not a base" for c in heun) and cands[-len(heun):] == heun
    ipndm = [c for c in cands if c.solver == "ipndm"]
    assert all(c.init == "least-squares" and c.init_distance != c.distance for c in ipndm)
    assert cands[0].solver == "ipndm"  # its fitted table scored 0.3: the best start
    exact = [c for c in cands if c.init == "exact"]
    assert exact and all(c.init_distance == c.distance for c in exact)  # exact: the classical score is reused
    bases = [c.init_distance for c in cands if c.is_base]
    assert bases == sorted(bases)
    assert calls.count("ipndm as initialised") == len(SCHEDULES) and "dpmpp3m as initialised" not in calls


def test_auto_picks_the_best_start_and_forced_keeps_the_yardstick():
    auto = select_base(BaseRequest(AUTO), 5, StudentConfig(5), "edm", 0.002, 80.0, fake_score([]))
    assert auto.chosen.name == "ipndm" and auto.best_classical.solver == "heun"
    assert auto.chosen_schedule == auto.candidates[0].schedule
    forced = select_base(BaseRequest("dpmpp3m"), 5, StudentConfig(5), "logsnr", 0.002, 80.0, fake_score([]))
    assert (forced.chosen.name == "dpmpp3m" and forced.chosen_schedule == "logsnr"
            and forced.best_classical.solver == "heun")
    doc = json.loads(json.dumps(forced.to_dict()))
    assert doc["request"] == "dpmpp3m" and doc["chosen"] == {"solver": "dpmpp3m", "schedule": "logsnr"}
    assert len(doc["candidates"]) == len(forced.candidates)
    with pytest.raises(S4SError, match="must evaluate once per step"):
        select_base(BaseRequest("heun"), 5, StudentConfig(5), "edm", 0.002, 80.0, fake_score([]))


def test_learn_with_auto_records_candidates_and_honest_ratios(tmp_path):
    cfg = TrainConfig(method="s4s", samples=16, batch=8, val_samples=16, distance="pseudo-huber", epochs=1)
    (row,) = learn(LearnRequest("gmm", (4,), cfg, teacher=TeacherSpec("unipc3", 12, "logsnr"), workdir=str(tmp_path)))
    info = load_solver_file(row["solver_file"]).info
    sel, val = info["base"]["selection"], info["validation"]
    cands = sel["candidates"]
    assert sel["request"] == "auto" and len(cands) == len(candidate_solvers(4)) * len(SCHEDULES)
    top = cands[0]
    assert (info["base"]["solver"], info["base"]["schedule"]) == (top["solver"], top["schedule"])
    assert val["iteration0"] == pytest.approx(top["init_distance"], rel=1e-9)  # the start scored is the start trained
    best = min(c["distance"] for c in cands)
    assert (val["best_classical_distance"] == best
            and val["ratio_to_best_classical"] == pytest.approx(val["learned"] / best))
    assert val["ratio_to_base"] == pytest.approx(val["learned"] / val["base"])
    assert val["best_classical_rmse"] == min(c["rmse"] for c in cands)
    assert row["ratio_to_best_classical"] == val["ratio_to_best_classical"]


def test_forced_base_with_schedule(tmp_path):
    cfg = TrainConfig(method="s4s", base="dpmpp2m:logsnr", samples=8, batch=8, val_samples=8, distance="pseudo-huber",
                      epochs=1)
    (row,) = learn(LearnRequest("gmm", (3,), cfg, teacher=TeacherSpec("unipc3", 12, "logsnr"), workdir=str(tmp_path)))
    info = load_solver_file(row["solver_file"]).info
    assert ((info["base"]["solver"], info["base"]["schedule"], info["base"]["selection"]["request"])
            == ("dpmpp2m", "logsnr", "dpmpp2m:logsnr"))


def test_auto_with_an_explicit_schedule_is_refused(tmp_path):
    cfg = TrainConfig(method="s4s", samples=8, batch=8, val_samples=8, distance="pseudo-huber", epochs=1)
    with pytest.raises(S4SError, match="--base auto scores every built-in schedule"):
        learn(LearnRequest("gmm", (3,), cfg, schedule="logsnr", workdir=str(tmp_path)))
