"""The command line: JSON output, and one-line errors with exit code 2 for bad input."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "S4S_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "s4s_export", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_eval_gmm_json():
    r = run_cli("eval", "--model", "gmm", "--solver", "dpmpp3m,unipc,ipndm", "--nfe", "3,5", "--samples", "8", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [(e["solver"], e["nfe"]) for e in report["results"]] == [
        ("dpmpp3m", 3), ("dpmpp3m", 5), ("unipc", 3), ("unipc", 5), ("ipndm", 3), ("ipndm", 5)]
    for e in report["results"]:
        assert e["schedule"] == "logsnr" and e["metrics"]["rmse_vs_reference"] > 0
    by = {(e["solver"], e["nfe"]): e["metrics"]["rmse_vs_reference"] for e in report["results"]}
    assert by[("ipndm", 5)] < by[("ipndm", 3)]
    assert report["model"]["name"] == "gmm" and len(report["model"]["weights_sha256"]) == 64


def test_models_json_lists_builtins():
    r = run_cli("models", "--json")
    assert r.returncode == 0, r.stderr
    names = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert {"demo", "gmm", "gmm-cond"} <= set(names)
    assert names["gmm"]["weights"] == "local"


@pytest.mark.parametrize("args,message", [
    (["eval", "--model", "nope"], "unknown model 'nope'; choose one of: "),
    (["eval", "--model", "gmm", "--solver", "rk4"], "unknown solver 'rk4'; choose one of: euler"),
    (["eval", "--model", "gmm", "--schedule", "cosine"], "unknown schedule 'cosine'"),
    (["eval", "--model", "gmm", "--solver", "heun", "--nfe", "4"], "needs an odd NFE"),
    (["eval", "--model", "gmm", "--solver", "dpmpp3m", "--nfe", "2"], "needs NFE >= 3"),
    (["eval", "--model", "gmm", "--nfe", "five"], "--nfe takes comma-separated positive integers"),
    (["eval", "--model", "gmm", "--schedule", "1,2,3"], "strictly decreasing"),
    (["eval", "--model", "gmm", "--checkpoint", "x.pkl"], "is bundled"),
    (["eval", "--model", "gmm", "--solver", "euler", "--nfe", "2", "--schedule", "200,1,0.002"],
     "explicit sigmas run from 200 to 0.002, but the model's range is sigma_max=80 to sigma_min=0.002"),
    # typer's own usage errors: one line too, not a box
    (["eval", "--samples", "0"], "Invalid value for '--samples'"),
    (["eval", "--foo"], "No such option: --foo"),
    (["eval", "--nfe"], "Option '--nfe' requires an argument"),
    (["nope"], "No such command 'nope'"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    r = run_cli(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_usage_error_points_to_the_command_help():
    assert run_cli("eval", "--foo").stderr.strip().endswith("see 's4s-export eval --help'")


@pytest.mark.parametrize("args,shows", [(["--help"], "Commands"), ([], "Commands"), (["eval", "--help"], "--samples")])
def test_help_exits_0(args, shows):
    r = run_cli(*args)
    assert r.returncode == 0 and r.stderr == ""
    assert "Usage:" in r.stdout and shows in r.stdout


def test_explicit_sigmas_over_the_model_range_run():
    r = run_cli("eval", "--model", "gmm", "--solver", "euler", "--nfe", "2", "--schedule", "80,1,0.002",
                "--samples", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["schedule"] == "explicit"
