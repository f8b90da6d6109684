"""Regenerate the quality-vs-NFE tables of docs/benchmarks.md: learned solvers vs every classical one.

    python benchmarks/quality.py --model demo --workdir s4s-workspace            # print the Markdown
    python benchmarks/quality.py --model demo --workdir ws-3-4 --workdir ws-5-10 --write docs/benchmarks.md

Every solver runs on the same held-out noise (`s4s_export.noise.VALIDATION_SEED`, never used for
training) against the model's teacher (or the exact reference for gmm models): the learned solver
files of the workspaces (one per NFE; several `--workdir` may hold different NFEs, never the same
one) and every classical solver (`s4s_export.solvers.SOLVERS`) that spends exactly the NFE, on every
built-in schedule (`s4s_export.schedules.SCHEDULES`). Per metric, a main table gives per NFE the
learned value, the best classical solver on the edm and logsnr grids (the yardstick of issue 14),
the best over all schedules, and the learned/best ratios; the full solver x schedule grid follows
in a <details> block, with the teacher's own samples as a row (0 for metrics against the teacher).
`--json FILE` keeps the measurements; `--reuse-classical FILE` (repeatable) takes the classical and
teacher rows from such files (same model, samples and metrics; together all the NFEs) and measures
only the learned files.
`--write FILE` replaces the block between `<!-- quality:MODEL:begin -->` and
`<!-- quality:MODEL:end -->` in FILE.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

MAIN_SCHEDULES = ("edm", "logsnr")  # the yardstick of issue 14: every solver on these two grids
LEARNED, TEACHER = "learned", "teacher"  # the schedule column of the learned and teacher rows


def learned_solvers(workdirs: list[str], nfes: list[int], identity: dict) -> tuple[list[tuple], dict[int, str]]:
    """(label, NFE, table) of every learned solver file for `nfes` in the workspaces, and NFE -> workspace.

    An NFE with files in two workspaces is an error: the table would not say which one it shows."""
    from s4s_export.errors import S4SError
    from s4s_export.solverfile import load_solver_file
    from s4s_export.workspace import Workspace

    out, source = [], {}
    for workdir in workdirs:
        ws = Workspace.open(workdir)
        for nfe in ws.solver_nfes():
            if nfe not in nfes:
                continue
            if nfe in source:
                raise S4SError(f"NFE {nfe} has a learned solver file in both {source[nfe]} and {ws.root}; "
                               "pass workspaces whose NFEs do not overlap")
            sf = load_solver_file(ws.solver_path(nfe), expect_identity=identity)
            out.append((f"{sf.info.get('method', 'solver file')} (learned)", nfe, sf.solver))
            source[nfe] = str(ws.root)
    return out, source


def reusable_rows(paths: list[Path], identity: dict, samples: int, nfes: list[int], metrics: list[str]) -> dict:
    """The classical and teacher rows of earlier `--json` files for the same model, samples and metrics, which
    together cover `nfes` (each NFE from the first file that has it)."""
    from s4s_export.errors import S4SError

    rows, machines, covered = [], [], set()
    for path in paths:
        try:
            old = json.loads(path.read_text())
            found = [r for r in old["rows"]
                     if r["schedule"] != LEARNED and r["nfe"] in nfes and r["nfe"] not in covered]
            same = old["model"] == identity and old["samples"] == samples and old["metrics"] == metrics
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise S4SError(f"--reuse-classical {path}: not a --json file of benchmarks/quality.py ({e})") from None
        if not same:
            raise S4SError(f"--reuse-classical {path} was measured for other settings (model, --samples or "
                           "--metric); run without it to measure the classical solvers again")
        rows += found
        covered |= {r["nfe"] for r in found}
        machines.append(old["machine"])
    missing = [n for n in nfes if n not in covered]
    if missing:
        raise S4SError(f"--reuse-classical: no file has NFE {','.join(map(str, missing))}; add one that has, or "
                       "run without it to measure the classical solvers again")
    return {"rows": rows, "machines": machines, "paths": [str(p) for p in paths]}


def measure(model: str, workdirs: list[str], nfes: list[int], samples: int, metrics: list[str],
            reuse: list[Path] | None = None) -> dict:
    """Every learned and classical solver (and the teacher's own samples) at every NFE on one held-out set.

    `reuse`: take the classical and teacher rows from earlier `--json` files instead of measuring them again."""
    from s4s_export.evaluate import score
    from s4s_export.heldout import held_out_set
    from s4s_export.learn.base_select import candidate_solvers
    from s4s_export.metrics import MetricSet
    from s4s_export.modelref import ModelRef, check_model, load_model
    from s4s_export.schedules import SCHEDULES
    from s4s_export.solvers import make_solver
    from s4s_export.timing import machine

    spec = check_model(ModelRef(model))
    denoiser = load_model(ModelRef(model))
    info = denoiser.info
    identity = denoiser.identity_dict()
    reused = None if not reuse else reusable_rows(reuse, identity, samples, nfes, metrics)
    learned, source = learned_solvers(workdirs, nfes, identity)
    tables = [(label, LEARNED, t) for label, _, t in learned]
    if reused is None:
        for nfe in nfes:
            tables += [(name, sched, make_solver(name, nfe, sched, info.sigma_min, info.sigma_max))
                       for sched in SCHEDULES for name in candidate_solvers(nfe)]
    held = held_out_set(denoiser, spec.teacher, samples)
    metric_set = MetricSet.create(metrics, denoiser)
    rows = [{"solver": label, "schedule": sched, "nfe": t.nfe, "metrics": score(denoiser, t, held, 64, metric_set)}
            for label, sched, t in tables]
    if reused is None:
        images = None if held.decoded_target is None else (held.decoded_target, held.decoded_target)
        teacher = metric_set.score(held.target, held.target, held.exact, images)
        rows += [{"solver": spec.teacher.label(), "schedule": TEACHER, "nfe": n, "metrics": teacher} for n in nfes]
    else:
        rows += reused["rows"]
    return {"model": identity, "teacher": spec.teacher.label(), "samples": samples, "nfes": nfes, "metrics": metrics,
            "workspaces": source, "schedules": list(SCHEDULES), "machine": machine(),
            "classical_from": None if reused is None else {"paths": reused["paths"], "machines": reused["machines"]},
            "skipped_metrics": metric_set.skipped, "rows": rows}


def summary(result: dict, key: str) -> dict[int, dict]:
    """Per NFE: the learned value, the best classical on MAIN_SCHEDULES and on any schedule (value, name)."""
    out = {}
    for n in result["nfes"]:
        at = [r for r in result["rows"] if r["nfe"] == n and key in r["metrics"]]
        classical = [(r["metrics"][key], r["solver"], r["schedule"]) for r in at
                     if r["schedule"] not in (LEARNED, TEACHER)]
        learned = [r["metrics"][key] for r in at if r["schedule"] == LEARNED]
        main = [c for c in classical if c[2] in MAIN_SCHEDULES]
        out[n] = {"learned": learned[0] if learned else None,
                  "best_main": min(main) if main else None, "best_any": min(classical) if classical else None}
    return out


def _ratio(learned: float | None, best: tuple | None) -> str:
    return "-" if learned is None or best is None else f"{learned / best[0]:.2f}x"


def _best(best: tuple | None) -> str:
    return "-" if best is None else f"{best[0]:.4g} ({best[1]}, {best[2]})"


def markdown(result: dict, command: str) -> str:
    """Per metric: the main table (rows = NFE), then the full solver x schedule grid in a <details> block."""
    from s4s_export.timing import describe_machine

    nfes = result["nfes"]
    sources = {}
    for n, ws in sorted(result["workspaces"].items(), key=lambda kv: int(kv[0])):
        sources.setdefault(ws, []).append(str(n))
    learned_from = "; ".join(f"NFE {','.join(ns)} from `{ws}`" for ws, ns in sources.items()) or "none"
    out = [f"Model `{result['model']['name']}` (weights {result['model']['weights_sha256'][:12]}), target: "
           f"{result['teacher']}, {result['samples']} held-out samples. "
           f"Machine: {describe_machine(result['machine'])}.",
           f"Command: `{command}`", f"Learned solver files: {learned_from}."]
    if result.get("classical_from"):
        runs = "; ".join(describe_machine(m) for m in result["classical_from"]["machines"])
        out.append(f"Classical and teacher rows: measured by the same script with the same settings (`--json`, "
                   f"reused with `--reuse-classical`) on {runs}.")
    out.append("")
    keys = list(dict.fromkeys(k for r in result["rows"] for k in r["metrics"]))
    schedules = ", ".join(result["schedules"])
    for key in keys:
        title = key.replace("_", " ")
        best = summary(result, key)
        teacher_value = next(r["metrics"][key] for r in result["rows"] if r["schedule"] == TEACHER)
        against_data = "_vs_" not in key
        out += [f"**{title}** (lower is better; the best classical solver over every solver on the edm and logsnr "
                f"grids, and over every solver on every schedule: {schedules})"
                + (f"; the teacher's own samples: {teacher_value:.4g}" if against_data else ""), "",
                "| NFE | learned | best on edm / logsnr | learned / it | best on any schedule | learned / it |",
                "|---|---|---|---|---|---|"]
        for n in nfes:
            b = best[n]
            learned = "-" if b["learned"] is None else f"{b['learned']:.4g}"
            out.append(f"| {n} | {learned} | {_best(b['best_main'])} | {_ratio(b['learned'], b['best_main'])} | "
                       f"{_best(b['best_any'])} | {_ratio(b['learned'], b['best_any'])} |")
        out += ["", f"<details><summary>{title}: every solver on every schedule (bold: the best classical "
                    "per NFE)</summary>", "",
                "| solver | schedule | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                "|---|---|" + "---|" * len(nfes)]
        values: dict[tuple[str, str], dict[int, float]] = {}
        for r in result["rows"]:
            if key in r["metrics"]:
                values.setdefault((r["solver"], r["schedule"]), {})[r["nfe"]] = r["metrics"][key]
        for (solver, sched), v in values.items():
            if sched == TEACHER and not against_data:  # 0 against itself
                continue
            cells = []
            for n in nfes:
                cell = f"{v[n]:.4g}" if n in v else "-"
                top = best[n]["best_any"]
                cells.append(f"**{cell}**" if top is not None and n in v and top[1:] == (solver, sched) else cell)
            out.append(f"| {solver} | {sched} | " + " | ".join(cells) + " |")
        out += ["", "</details>", ""]
    for name, why in result["skipped_metrics"].items():
        out.append(f"- `{name}` not measured: {why}")
    return "\n".join(out).rstrip() + "\n"


def write_block(path: Path, model: str, text: str) -> None:
    from s4s_export.errors import S4SError
    from s4s_export.fileio import atomic_write_text

    begin, end = f"<!-- quality:{model}:begin -->", f"<!-- quality:{model}:end -->"
    doc = path.read_text()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(doc):
        raise S4SError(f"{path} has no {begin} ... {end} block to replace; add the two markers where the table goes")
    atomic_write_text(path, pattern.sub(lambda _: f"{begin}\n{text}{end}", doc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--workdir", action="append", default=[],
                        help="workspace whose learned solver files to include (repeat for NFEs in other workspaces)")
    parser.add_argument("--nfe", default="3,4,5,6,7,8,9,10")
    parser.add_argument("--samples", type=int, default=200, help="held-out samples (the learn validation count)")
    parser.add_argument("--metric", default="rmse,lpips")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements as JSON")
    parser.add_argument("--reuse-classical", type=Path, action="append", default=[],
                        help="take the classical and teacher rows from earlier --json files of the same settings "
                             "(repeat: files for different NFEs)")
    parser.add_argument("--write", type=Path, default=None, help="replace this model's block in a Markdown file")
    args = parser.parse_args(argv)
    from s4s_export.commands.common import parse_ints
    from s4s_export.metrics import parse_metrics

    command = "python benchmarks/quality.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    command = re.sub(r"\s+--(write|json|reuse-classical) \S+", "", command).strip()
    result = measure(args.model, args.workdir, parse_ints(args.nfe), args.samples, parse_metrics(args.metric),
                     args.reuse_classical)
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
