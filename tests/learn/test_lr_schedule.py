"""`--lr-schedule`: constant rates, or a per-step cosine decay to 10% (learn/trainer.py)."""

import pytest

from s4s_export.errors import S4SError
from s4s_export.learn.config import TrainConfig
from s4s_export.learn.pipeline import LearnRequest, learn
from s4s_export.solverfile import load_solver_file
from s4s_export.teacher import TeacherSpec


def test_unknown_schedule_is_refused():
    with pytest.raises(S4SError, match="lr-schedule"):
        TrainConfig(lr_schedule="step").resolved()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_rates_follow_the_schedule(tmp_path, monkeypatch, schedule):
    from s4s_export.learn import trainer as trainer_mod

    seen = []
    original = trainer_mod.Trainer._set_lr

    def record(self, progress):
        original(self, progress)
        seen.append((progress, self.opt_coeffs.param_groups[0]["lr"], self.opt_times.param_groups[0]["lr"]))

    monkeypatch.setattr(trainer_mod.Trainer, "_set_lr", record)
    cfg = TrainConfig(method="s4s-alt", samples=16, batch=8, val_samples=8, distance="pseudo-huber", epochs=1,
                      alternations=2, lr_schedule=schedule)
    (row,) = learn(LearnRequest("gmm", (3,), cfg, teacher=TeacherSpec("unipc3", 12, "logsnr"), workdir=str(tmp_path)))
    assert [p for p, _, _ in seen] == [i / 8 for i in range(8)]  # 4 epochs x 2 batches
    lrs = [c for _, c, _ in seen]
    if schedule == "constant":
        assert set(lrs) == {cfg.lr} and {t for _, _, t in seen} == {cfg.time_lr}
    else:
        assert lrs[0] == pytest.approx(cfg.lr) and lrs == sorted(lrs, reverse=True) and lrs[-1] > 0.1 * cfg.lr
        assert seen[4][1] == pytest.approx(cfg.lr * (0.1 + 0.45 * (1 + 0.0)), rel=1e-9)  # half way: cos(pi/2) = 0
    assert load_solver_file(row["solver_file"]).info["training"]["lr_schedule"] == schedule
