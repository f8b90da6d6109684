"""`s4s-export export-scheduler` and `inspect DIR`: the folder loads with from_pretrained; bad input is one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
from integration_tables import learned_like
from tiny_pipelines import saved_model, sd_pipeline

from s4s_export.integrations.diffusers_scheduler import S4SScheduler
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver

SD = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "prediction_type": "v_prediction"}


def run_cli(*args):
    env = {**os.environ, "S4S_QUIET": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "s4s_export", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def error_line(r) -> str:
    """The CLI's one error line (diffusers' own loading warnings may precede it on stderr)."""
    lines = r.stderr.strip().splitlines()
    assert (r.returncode == 2 and sum(line.startswith("error:") for line in lines) == 1
            and lines[-1].startswith("error:"))
    return lines[-1]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """A tiny SD-layout folder and a learned-like solver file recorded for it as `diffusers:PATH`."""
    root = tmp_path_factory.mktemp("export_scheduler")
    model = saved_model(sd_pipeline(diffusers.EulerDiscreteScheduler(**SD)), root / "sd")
    table = learned_like(make_solver("dpmpp2m", 4, "logsnr", model.info.sigma_min, model.info.sigma_max), seed=5)
    identity = {**model.identity_dict(), "name": f"diffusers:{root / 'sd'}"}
    path = save_solver_file(root / "s.json", SolverFile(table, {"method": "s4s-alt", "model": identity}))
    return root, path, table


def test_export_scheduler_writes_a_from_pretrained_folder(learned):
    root, path, table = learned
    r = run_cli("export-scheduler", str(path), "--out", str(root / "scheduler"))
    assert r.returncode == 0, r.stderr
    assert "S4SScheduler.from_pretrained" in r.stdout and "num_inference_steps=4" in r.stdout
    back = S4SScheduler.from_pretrained(root / "scheduler")
    assert (np.array_equal(back.table.table, table.table)
            and back.config.model_scheduler["prediction_type"] == "v_prediction")
    assert back.config.provenance["method"] == "s4s-alt"
    expected = S4SScheduler.from_solver_file(path, root / "sd" / "scheduler")
    assert np.array_equal(back.rows, expected.rows) and back.init_noise_sigma == expected.init_noise_sigma
    r = run_cli("inspect", str(root / "scheduler"))
    assert r.returncode == 0, r.stderr
    assert "S4SScheduler, solver s4s-alt (NFE 4" in r.stdout and f'from_pretrained("{root / "sd"}")' in r.stdout


def test_export_scheduler_refuses_another_model(learned, tmp_path):
    root, _, table = learned
    other = {"name": "diffusers:elsewhere", "weights_sha256": "1" * 64, "shape": [4, 16, 16]}
    path = save_solver_file(tmp_path / "o.json", SolverFile(table, {"method": "s4s-alt", "model": other}))
    r = run_cli("export-scheduler", str(path), "--out", str(tmp_path / "sched"), "--for", f"diffusers:{root / 'sd'}")
    assert "was learned for model 'diffusers:elsewhere'" in error_line(r)
    assert not (tmp_path / "sched").exists()


def test_export_scheduler_needs_a_diffusers_model(tmp_path):
    path = save_solver_file(tmp_path / "c.json", SolverFile(make_solver("euler", 3), {"method": "euler"}))
    r = run_cli("export-scheduler", str(path), "--out", str(tmp_path / "sched"))
    assert "pass --for diffusers:PATH" in error_line(r)
