"""Regenerate the quality-vs-NFE tables of docs/benchmarks.md: learned solvers vs classical ones.

    python benchmarks/quality.py --model demo --workdir s4s-workspace            # print the Markdown
    python benchmarks/quality.py --model demo --workdir s4s-workspace --write docs/benchmarks.md

Every solver runs on the same held-out noise (`s4s_export.noise.VALIDATION_SEED`, never used for
training) against the model's teacher (or the exact reference for gmm models): the learned solver
files in the workspace (one per NFE) and dpmpp3m, unipc and ipndm on the edm and logsnr schedules.
The table gives RMSE (and LPIPS where its weights are installed) per NFE, the best classical
solver per NFE and the learned/best-classical ratio. `--write FILE` replaces the block between
`<!-- quality:MODEL:begin -->` and `<!-- quality:MODEL:end -->` in FILE.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

CLASSICAL = ("dpmpp3m", "unipc", "ipndm")
SCHEDULES = ("edm", "logsnr")


def measure(model: str, workdir: str | None, nfes: list[int], samples: int, metrics: list[str]) -> dict:
    from s4s_export.evaluate import score
    from s4s_export.heldout import held_out_set
    from s4s_export.metrics import MetricSet
    from s4s_export.modelref import ModelRef, check_model, load_model
    from s4s_export.solver_ref import resolve_solvers
    from s4s_export.solverfile import load_solver_file
    from s4s_export.timing import machine
    from s4s_export.workspace import Workspace

    spec = check_model(ModelRef(model))
    denoiser = load_model(ModelRef(model))
    tables = []
    learned_from = None
    if workdir is not None:
        ws = Workspace.open(workdir)
        learned_from = str(ws.root)
        for nfe in ws.solver_nfes():
            if nfe in nfes:
                sf = load_solver_file(ws.solver_path(nfe), expect_identity=denoiser.identity_dict())
                tables.append((f"{sf.info.get('method', 'solver file')} (learned)", "learned", sf.solver))
    for schedule in SCHEDULES:
        for name in CLASSICAL:
            tables += [(name, schedule, s.table)
                       for s in resolve_solvers([name], nfes, denoiser=denoiser, schedule=schedule)]
    held = held_out_set(denoiser, spec.teacher, samples)
    metric_set = MetricSet.create(metrics, denoiser)
    rows = [{"solver": label, "schedule": sched, "nfe": t.nfe, "metrics": score(denoiser, t, held, 64, metric_set)}
            for label, sched, t in tables]
    return {"model": denoiser.identity_dict(), "teacher": spec.teacher.label(), "samples": samples, "nfes": nfes,
            "workspace": learned_from, "machine": machine(), "skipped_metrics": metric_set.skipped, "rows": rows}


def markdown(result: dict, command: str) -> str:
    """One table per metric: rows = solvers, columns = NFE; then best classical and the ratio."""
    from s4s_export.timing import describe_machine

    nfes = result["nfes"]
    out = [f"Model `{result['model']['name']}` (weights {result['model']['weights_sha256'][:12]}), target: "
           f"{result['teacher']}, {result['samples']} held-out samples. "
           f"Machine: {describe_machine(result['machine'])}.",
           f"Command: `{command}`", ""]
    keys = list(dict.fromkeys(k for r in result["rows"] for k in r["metrics"]))
    for key in keys:
        values: dict[tuple[str, str], dict[int, float]] = {}
        for r in result["rows"]:
            values.setdefault((r["solver"], r["schedule"]), {})[r["nfe"]] = r["metrics"][key]
        best = {n: min((v[n], f"{s} {sc}") for (s, sc), v in values.items() if sc != "learned" and n in v)
                for n in nfes}
        out += [f"**{key.replace('_', ' ')}** (lower is better)", "",
                "| solver | schedule | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                "|---|---|" + "---|" * len(nfes)]
        for (solver, sched), v in values.items():
            cells = [f"{v[n]:.4g}" if n in v else "-" for n in nfes]
            if sched != "learned":
                cells = [f"**{c}**" if n in v and best[n][1] == f"{solver} {sched}" else c for c, n in zip(cells, nfes)]
            out.append(f"| {solver} | {sched} | " + " | ".join(cells) + " |")
        out.append("| best classical | | " + " | ".join(f"{best[n][0]:.4g}" for n in nfes) + " |")
        for (solver, sched), v in values.items():
            if sched == "learned":
                out.append(f"| {solver} / best classical | | " +
                           " | ".join(f"{v[n] / best[n][0]:.2f}x" if n in v else "-" for n in nfes) + " |")
        out.append("")
    for name, why in result["skipped_metrics"].items():
        out.append(f"- `{name}` not measured: {why}")
    if result["workspace"] is None:
        out.append("- learned solvers: none in this table (no --workdir given)")
    return "\n".join(out).rstrip() + "\n"


def write_block(path: Path, model: str, text: str) -> None:
    from s4s_export.fileio import atomic_write_text

    begin, end = f"<!-- quality:{model}:begin -->", f"<!-- quality:{model}:end -->"
    doc = path.read_text()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(doc):
        sys.exit(f"error: {path} has no {begin} ... {end} block to replace")
    atomic_write_text(path, pattern.sub(lambda _: f"{begin}\n{text}{end}", doc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--workdir", default=None, help="workspace whose learned solver files to include")
    parser.add_argument("--nfe", default="3,4,5,6,7,8,9,10")
    parser.add_argument("--samples", type=int, default=200, help="held-out samples (the learn validation count)")
    parser.add_argument("--metric", default="rmse,lpips")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements as JSON")
    parser.add_argument("--write", type=Path, default=None, help="replace this model's block in a Markdown file")
    args = parser.parse_args(argv)
    from s4s_export.commands.common import parse_ints
    from s4s_export.metrics import parse_metrics

    command = "python benchmarks/quality.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    command = re.sub(r"\s+--(write|json) \S+", "", command).strip()
    result = measure(args.model, args.workdir, parse_ints(args.nfe), args.samples, parse_metrics(args.metric))
    text = markdown(result, command)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.write:
        write_block(args.write, args.model, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    from s4s_export.errors import S4SError

    try:
        sys.exit(main())
    except S4SError as e:
        sys.exit(f"error: {e}")
