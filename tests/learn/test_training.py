"""The training loop on the exact gmm model: improvement, determinism, resume, rollback."""

import json
import logging

import pytest
import torch

from s4s_export.learn import teacher_cache
from s4s_export.learn.config import TrainConfig
from s4s_export.learn.distances import make_distance
from s4s_export.learn.pipeline import LearnRequest, learn
from s4s_export.learn.student import S4SStudent, StudentConfig, init_from_base
from s4s_export.learn.teacher_cache import teacher_pairs
from s4s_export.learn.trainer import Trainer
from s4s_export.solverfile import load_solver_file
from s4s_export.solvers import make_solver
from s4s_export.teacher import TeacherSpec

FAST = TeacherSpec("unipc3", 12, "logsnr")
TINY = dict(samples=24, batch=8, val_samples=16, distance="pseudo-huber")


def request(workdir, method="s4s-alt", nfes=(4,), resume=False, **cfg):
    config = TrainConfig(method=method, **{**TINY, "epochs": 1, "alternations": 2, **cfg})
    return LearnRequest("gmm", nfes, config, teacher=FAST, workdir=str(workdir), resume=resume)


@pytest.mark.parametrize("method,extra", [("s4s", {}), ("s4s-alt", {}), ("joint", {}),
                                          ("s4s", {"pc": False, "base": "unipc"}),
                                          ("s4s-alt", {"offsets": False, "pc": False})])
def test_learning_beats_the_base(tmp_path, method, extra):
    rows = learn(request(tmp_path, method, epochs=3 if method != "s4s-alt" else 1, lr=1e-2, time_lr=2e-2, **extra))
    (row,) = rows
    assert row["learned_val"] < row["base_val"]
    doc = load_solver_file(row["solver_file"])
    assert doc.info["validation"]["learned"] < doc.info["validation"]["base"]
    assert doc.info["method"] == method and doc.info["distance"]["name"] == "pseudo-huber"
    assert doc.info["base"]["init"] == "exact" and doc.info["model"]["name"] == "gmm"
    pc = extra.get("pc", True)  # the defaults: PC on, offsets on where times are learned
    assert doc.info["predictor_corrector"] == pc and ("corrector" in doc.info["parameters"]) == pc
    assert doc.info["decoupled_offsets"] == extra.get("offsets", method != "s4s")
    if doc.info["decoupled_offsets"]:
        evals, grid = doc.solver.eval_sigmas, doc.solver.sigmas
        assert evals[0] == grid[0] and not (evals[1:] == grid[1:-1]).all()  # offsets moved the evaluation sigmas


def test_same_seed_gives_byte_identical_solver_file(tmp_path):
    paths = [learn(request(tmp_path / name, seed=seed))[0]["solver_file"]
             for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    a, b, c = (open(p, "rb").read() for p in paths)
    assert a == b
    assert a != c and json.loads(c)["seeds"]["train_noise_seed"] != json.loads(a)["seeds"]["train_noise_seed"]


def test_resume_continues_from_saved_state(tmp_path, monkeypatch):
    full = open(learn(request(tmp_path / "full"))[0]["solver_file"], "rb").read()

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        learn(request(tmp_path / "cut"), on_epoch=interrupt)
    state = torch.load(tmp_path / "cut" / "runs" / "nfe4.pt", weights_only=True)
    assert state["epoch"] == 2 and not state["done"]

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran again on --resume")

    monkeypatch.setattr(teacher_cache, "run_teacher", no_teacher)
    epochs = []
    resumed = learn(request(tmp_path / "cut", resume=True), on_epoch=lambda r: epochs.append(r["epoch"]))
    assert epochs == [3, 4]  # only what was left
    assert open(resumed[0]["solver_file"], "rb").read() == full
    with pytest.raises(Exception, match="other settings"):
        learn(request(tmp_path / "cut", resume=True, lr=0.5))


class NaNAfter(torch.nn.Module):
    """Wraps a denoiser; returns NaN from call `start` on, for `count` calls."""

    def __init__(self, inner, start, count):
        super().__init__()
        self.inner, self.info, self.start, self.count, self.calls = inner, inner.info, start, count, 0

    def forward(self, x, sigma, cond=None):
        self.calls += 1
        out = self.inner(x, sigma, cond)
        return out * float("nan") if self.start <= self.calls < self.start + self.count else out


def test_nan_from_the_model_triggers_rollback(gmm, tmp_path, caplog):
    cfg = TrainConfig(method="s4s", samples=24, batch=8, epochs=2, val_samples=8, lr=1e-2).resolved()
    train = teacher_pairs(tmp_path, gmm, FAST, 0, 24)
    val = teacher_pairs(tmp_path, gmm, FAST, 10**6, 8)
    base = make_solver("dpmpp3m", 4, "logsnr")
    student = S4SStudent(StudentConfig(4), base.sigmas)
    init_from_base(student, base)
    nan_model = NaNAfter(gmm, start=30, count=4)  # past the two validations of iteration 0 (2 x 4 calls), mid-epoch
    trainer = Trainer(nan_model, student, base, cfg, train, val, make_distance("pseudo-huber", gmm.info.shape), 0.01,
                      tmp_path / "state.pt", {"test": 1}, torch.device("cpu"), torch.float64)
    with caplog.at_level(logging.WARNING, logger="s4s_export.learn"):
        result = trainer.run()
    assert result.rollbacks >= 1 and "rolled back" in caplog.text
    assert trainer.lr_scale < 1.0
    assert all(torch.isfinite(p).all() for p in result.student.parameters())
    # finite, never worse than iteration 0
    assert result.best_val <= result.init_val and result.best_val == result.best_val


@pytest.mark.parametrize("damage,match", [
    (lambda s: [1, 2], "not a training state"),
    (lambda s: {k: v for k, v in s.items() if k != "relax"}, r"is damaged \(KeyError: missing 'relax'\)"),
    (lambda s: {**s, "student": {"coeffs": torch.zeros(3)}}, r"is damaged \(RuntimeError"),
    (lambda s: {**s, "history": "{}"}, r"is damaged \(TypeError: history is not a list"),
])
def test_damaged_state_is_refused_in_one_line(tmp_path, damage, match):
    from s4s_export.errors import S4SError

    learn(request(tmp_path, alternations=1))
    state_path = tmp_path / "runs" / "nfe4.pt"
    state = torch.load(state_path, weights_only=True)
    torch.save(damage(state), state_path)
    with pytest.raises(S4SError, match=match) as e:
        learn(request(tmp_path, alternations=1, resume=True))
    assert "\n" not in str(e.value) and "rerun without --resume" in str(e.value)


def test_second_run_into_a_busy_workspace_is_refused(tmp_path):
    from s4s_export.errors import S4SError

    (tmp_path / "learn.lock").write_text("1\n")  # pid 1 always exists
    with pytest.raises(S4SError, match=r"in use by another learn run \(pid 1,"):
        learn(request(tmp_path))
    assert not (tmp_path / "model.json").exists()  # nothing written
