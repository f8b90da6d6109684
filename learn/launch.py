"""`s4s-export learn --nproc K`: start K ranks of `learn` on this host and watch them (docs/learning.md).

Each rank is `python -m s4s_export learn ...` with the environment torchrun gives its workers
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT), so a
rank runs the same code under torchrun and here. Rank 0's output passes through; the others' is
kept. When a rank fails, the others are stopped and the job ends with one line naming the rank
and its reason (a rank that died by a signal before the rest lost contact is named as the cause).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..errors import S4SError

LOST_CONTACT = "lost contact with the other ranks"
GRACE_S = 2.0  # after the first failure, how long the others get to report their own reason


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_args(argv: list[str]) -> list[str]:
    """The `learn` arguments of this command line without --nproc (one rank's command line)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1].removeprefix("error: ") if lines else ""


class _Rank:
    def __init__(self, rank: int, nproc: int, port: int, args: list[str], logdir: Path):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        self.rank, self.log = rank, logdir / f"rank{rank}.err"
        self.tail = ""
        out = None if rank == 0 else subprocess.DEVNULL
        with open(os.devnull if rank == 0 else self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "s4s_export", "learn", *args], env=env, stdout=out,
                                         stderr=subprocess.PIPE if rank == 0 else err, text=True)
        self.reader = threading.Thread(target=self._echo, daemon=True) if rank == 0 else None
        if self.reader is not None:
            self.reader.start()

    def _echo(self) -> None:
        """Rank 0's stderr passes through; its last line is kept as its reason."""
        for line in self.proc.stderr:
            if line.strip():
                self.tail = line
            if not line.startswith("error: "):
                sys.stderr.write(line)
                sys.stderr.flush()

    def reason(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        if self.reader is not None:
            self.reader.join(timeout=5)
            text = self.tail
        else:
            text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return _last_line(text).removeprefix(f"rank {self.rank}: ") or f"exited with code {code}"


def _stop(ranks: list[_Rank]) -> None:
    for r in ranks:
        if r.proc.poll() is None:
            r.proc.terminate()
    deadline = time.monotonic() + 5
    for r in ranks:
        try:
            r.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()


def launch(nproc: int, argv: list[str]) -> None:
    """Run `learn argv` on `nproc` local ranks; returns when all succeed, S4SError (one line) when one fails."""
    with tempfile.TemporaryDirectory(prefix="s4s-ranks-") as logdir:
        port = free_port()
        ranks = [_Rank(r, nproc, port, worker_args(argv), Path(logdir)) for r in range(nproc)]
        try:
            while True:
                codes = [r.proc.poll() for r in ranks]
                if all(c == 0 for c in codes):
                    if ranks[0].reader is not None:
                        ranks[0].reader.join(timeout=5)
                    return
                if any(c not in (None, 0) for c in codes):
                    break
                time.sleep(0.1)
            deadline = time.monotonic() + GRACE_S
            while time.monotonic() < deadline and any(r.proc.poll() is None for r in ranks):
                time.sleep(0.1)
        finally:
            _stop(ranks)
        failed = [r for r in ranks if r.proc.returncode not in (None, 0)]
        reasons = {r.rank: r.reason() for r in failed}
        cause = next((r for r in failed if r.proc.returncode < 0 and r.proc.returncode != -signal.SIGTERM), None) \
            or next((r for r in failed if LOST_CONTACT not in reasons[r.rank]), failed[0])
        raise S4SError(f"rank {cause.rank} of {nproc}: {reasons[cause.rank]} (the other ranks were stopped); "
                       "rerun with --resume to continue from the last saved epoch")
