"""Learning on 2 CPU ranks (Gloo, `learn --nproc 2`): the same solver file as one process, a killed rank
stops the job in one line, and --resume continues with 1 or 2 ranks."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from s4s_export.cli import app

GMM = ["--model", "gmm", "--teacher", "unipc3:12:logsnr", "--samples", "24", "--batch", "8", "--val-samples", "16",
       "--distance", "pseudo-huber", "--nfe", "3", "--alternations", "2"]
DEMO = ["--model", "demo", "--teacher", "unipc3:6:logsnr", "--base", "dpmpp2m:logsnr", "--samples", "8", "--batch", "8",
        "--val-samples", "8", "--distance", "pseudo-huber", "--nfe", "2", "--alternations", "1"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no torch.distributed with Gloo")


def one_process(args: list[str], workdir: Path, *extra: str) -> bytes:
    r = CliRunner().invoke(app, ["learn", *args, "--workdir", str(workdir), *extra])
    assert r.exit_code == 0 and r.exception is None, r.output
    return (workdir / "solvers" / f"nfe{args[args.index('--nfe') + 1]}.json").read_bytes()


def ranks(args: list[str], workdir: Path, *extra: str, nproc: int = 2) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "S4S_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-m", "s4s_export", "learn", *args, "--workdir", str(workdir), *extra,
                             "--nproc", str(nproc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_ranks_write_the_same_solver_file_as_one_process(tmp_path, args=DEMO):
    """The demo network; gmm is covered by the next test (2 ranks, killed, resumed on 2 ranks == 1 process)."""
    single = one_process(args, tmp_path / "one")
    p = ranks(args, tmp_path / "two")
    _out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert (tmp_path / "two" / "solvers" / "nfe" f"{args[args.index('--nfe') + 1]}.json").read_bytes() == single
    assert "Traceback" not in err and not (tmp_path / "two" / "learn.lock").exists()


def _rank_pid(launcher: int, rank: int) -> int | None:
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in children:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid)
    return None


def _saved_epoch(state: Path) -> int:
    try:
        return int(torch.load(state, weights_only=True)["epoch"])
    except Exception:  # not written yet, or being replaced
        return -1


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the rank processes through /proc")
def test_killed_rank_stops_the_job_and_resume_works_with_1_or_2_ranks(tmp_path):
    args = [*GMM[:GMM.index("--alternations")], "--alternations", "4", "--samples", "48"]
    reference = one_process(args, tmp_path / "ref")
    ws = tmp_path / "cut"
    p = ranks(args, ws)
    state = ws / "runs" / "nfe3.pt"
    deadline = time.monotonic() + 120
    while _saved_epoch(state) < 1 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = _rank_pid(p.pid, 1)
    assert victim is not None and p.poll() is None, "the job ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [errors[-1]] and err.rstrip().endswith(errors[0]), err
    assert "rank 1 of 2: killed by signal SIGKILL" in errors[0] and "--resume" in errors[0]
    assert "Traceback" not in err
    saved = _saved_epoch(state)
    assert 1 <= saved < 8 and not (ws / "solvers" / "nfe3.json").exists()
    shutil.copytree(ws, tmp_path / "cut2")
    assert one_process(args, ws, "--resume") == reference  # 1 rank continues the 2-rank run
    p = ranks(args, tmp_path / "cut2", "--resume")
    _out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert (tmp_path / "cut2" / "solvers" / "nfe3.json").read_bytes() == reference
