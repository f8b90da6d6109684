"""The cost of learning a solver, for `s4s-export bench`: wall time and peak memory.

It comes from the workspace's run record (`s4s-export learn` writes wall time and peak memory to
runs/nfe{N}.json), or, with `learn_samples`, from a short `s4s-export learn` run in a subprocess
(fresh process, so its peak RSS is its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import S4SError
from ..workspace import Workspace

if TYPE_CHECKING:
    from .run import BenchRequest


def learning_cost(req: BenchRequest, ws: Workspace | None, why_not: str = "") -> dict:
    """Wall time and peak memory of learning: the workspace's run record, or a short timed run."""
    if req.learn_samples > 0:
        return short_learn_run(req)
    hint = "or pass --learn-samples N to time a short run"
    if ws is None:
        return {"skipped": f"{why_not}; {hint}"}
    record = ws.report_path(req.nfe)
    model = req.ref.text
    if not record.is_file():
        return {"skipped": f"workspace {ws.root} has no run record for {model} at NFE {req.nfe} ({record}): run "
                           f"`s4s-export learn --model {model} --nfe {req.nfe} --workdir {ws.root}`, {hint}"}
    run = json.loads(record.read_text())
    solver_doc = json.loads(Path(run["solver_file"]).read_text()) if Path(run["solver_file"]).is_file() else {}
    return {"source": str(record), "device": run.get("device"), "wall_s": run["wall_s"],
            "peak_memory": run["peak_memory"],
            "what": "trainer time (training and validation; teacher generation excluded), from the run record",
            "method": solver_doc.get("method"), "training": solver_doc.get("training"),
            "validation": run.get("validation")}


def short_learn_run(req: BenchRequest) -> dict:
    """`s4s-export learn` (S4S-Alt, 1 alternation, `learn_samples` pairs) in a subprocess and a temporary workspace."""
    samples = req.learn_samples
    args = [*req.ref.cli_args()[:2], "--nfe", str(req.nfe), "--samples", str(samples), "--batch", str(min(40, samples)),
            "--alternations", "1", "--val-samples", str(min(200, samples)), *req.ref.cli_args()[2:]]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "s4s_export", "learn", *args, "--workdir", tmp, "--json"]
        env = {**os.environ, "S4S_QUIET": "1", "OMP_NUM_THREADS": str(req.threads)}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        total = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise S4SError(f"the timed learn run failed ({last}); run `s4s-export learn {' '.join(args)}` to see why")
    row = json.loads(proc.stdout)["results"][0]
    return {"source": f"s4s-export learn {' '.join(args)}", "device": "cpu", "wall_s": row["wall_s"],
            "wall_s_with_teacher": total, "peak_memory": row["peak_memory"],
            "what": "short run: trainer time (teacher excluded) and the whole command (teacher and start-up included)",
            "method": row["method"], "base_val": row["base_val"], "learned_val": row["learned_val"]}


def describe_learning(learning: dict) -> str:
    """One line: `learning: 12 s, peak memory 300 MiB (...)`, or `learning: skipped: why`."""
    if "skipped" in learning:
        return f"learning: skipped: {learning['skipped']}"
    return (f"learning: {learning['wall_s']:.0f} s, peak memory {learning['peak_memory']['bytes'] / 2**20:.0f} MiB "
            f"({learning['peak_memory']['what']}; {learning['what']}; {learning['source']})")
