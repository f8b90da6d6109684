"""Presets on the command line: `models` lists them; a missing file stops a command at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from s4s_export.cache import CACHE_ENV, OFFLINE_ENV
from s4s_export.cli import app
from s4s_export.errors import S4SError
from s4s_export.presets import PRESETS

FFHQ_FILE = "edm-ffhq-64x64-uncond-vp.pkl"


def test_models_lists_presets(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {CACHE_ENV: str(tmp_path)}
    rows = {m["name"]: m for m in json.loads(runner.invoke(app, ["models", "--json"], env=env).stdout)["models"]}
    for p in PRESETS.values():
        assert rows[p.name]["resolution"] == p.resolution and rows[p.name]["conditioning"] == p.conditioning
        assert rows[p.name]["weights"] == "missing"
    (tmp_path / "edm-cifar10-32x32-cond-vp.pkl").touch()
    rows = {m["name"]: m for m in json.loads(runner.invoke(app, ["models", "--json"], env=env).stdout)["models"]}
    assert rows["cifar10-cond"]["weights"] == "local" and rows["cifar10"]["weights"] == "missing"
    assert rows["imagenet64"]["resolution"] == "3x64x64" and rows["imagenet64"]["conditioning"] == "class"


@pytest.mark.parametrize("command", ["eval", "learn"])
def test_missing_weights_stop_at_once(command: str, tmp_path: Path) -> None:
    """In-process (imports warm): the command fails within a second with the placement message."""
    runner = CliRunner()
    env = {CACHE_ENV: str(tmp_path), OFFLINE_ENV: "1", "S4S_QUIET": "1"}
    args = [command, "--model", "ffhq", "--workdir", str(tmp_path / "ws")] if command == "learn" else \
        [command, "--model", "ffhq"]
    runner.invoke(app, args, env=env)  # first call pays the imports
    start = time.perf_counter()
    result = runner.invoke(app, args, env=env)
    elapsed = time.perf_counter() - start
    assert isinstance(result.exception, S4SError), result.output
    assert f"save it as {tmp_path / FFHQ_FILE}" in str(result.exception)
    assert elapsed < 1.0
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("command", ["eval", "learn"])
def test_missing_weights_cli_message(command: str, tmp_path: Path) -> None:
    env = {**os.environ, CACHE_ENV: str(tmp_path), OFFLINE_ENV: "1", "S4S_QUIET": "1"}
    r = subprocess.run([sys.executable, "-m", "s4s_export", command, "--model", "ffhq"], capture_output=True,
                       text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'ffhq' needs " + FFHQ_FILE)
    assert f"download {PRESETS['ffhq'].url} and save it as {tmp_path / FFHQ_FILE}" in lines[0]


def test_missing_checkpoint_stops_before_torch(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pkl"
    report = "import atexit, sys; atexit.register(lambda: print('torch' in sys.modules)); "
    r = subprocess.run([sys.executable, "-c", report + "from s4s_export.cli import main; main()", "learn", "--model",
                        "ffhq", "--checkpoint", str(missing)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env={**os.environ, CACHE_ENV: str(tmp_path / "cache"), "S4S_QUIET": "1"})
    assert r.returncode == 2 and r.stdout == "False\n"  # torch was never imported
    assert r.stderr.splitlines() == [f"error: checkpoint file not found: {missing}; --checkpoint takes an existing "
                                     f"EDM pickle, torch state dict or safetensors file"]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "s4s-workspace").exists()
