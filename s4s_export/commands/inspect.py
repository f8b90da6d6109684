"""`s4s-export inspect FILE`: what a solver file (or an exported .onnx graph) holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.text import Text

from ..contract import SIDECAR_FORMAT
from ..errors import S4SError
from ..solverfile import load_solver_file
from .common import console, print_json, print_table


def _fmt(v: object) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _solver_report(path: Path, json_out: bool) -> None:
    sf = load_solver_file(path)
    doc = {"solver": sf.solver.to_dict(), **sf.info}
    if json_out:
        print_json(doc)
        return
    s, info = sf.solver, sf.info
    model = info.get("model", {})
    lines = [
        ("solver", f"{s.name} (NFE {s.nfe})"),
        ("method", info.get("method", "-")),
        ("model", f"{model.get('name', '-')} weights {str(model.get('weights_sha256', '-'))[:16]} shape "
                  f"{model.get('shape', '-')}"),
    ]
    base = info.get("base") or {}
    if base:
        lines.append(("base", f"{base.get('solver')} on {base.get('schedule')} ({base.get('init')} initialisation)"))
    for key in ("schedule", "order_cap", "predictor_corrector", "decoupled_offsets"):
        if key in info:
            lines.append((key.replace("_", " "), _fmt(info[key])))
    if "teacher" in info:
        lines.append(("teacher", info["teacher"].get("label", info["teacher"])))
    if "distance" in info:
        lines.append(("distance", ", ".join(f"{k}={_fmt(v)}" for k, v in info["distance"].items())))
    if "relaxation" in info:
        r = info["relaxation"]
        lines.append(("relaxation", f"radius {_fmt(r.get('radius'))} (c_r {r.get('radius_constant')}, m "
                                    f"{r.get('num_coefficients')})"))
    if "seeds" in info:
        lines.append(("seeds", ", ".join(f"{k}={v}" for k, v in info["seeds"].items())))
    if "training" in info:
        lines.append(("training", ", ".join(f"{k}={_fmt(v)}" for k, v in info["training"].items())))
    if "versions" in info:
        lines.append(("versions", ", ".join(f"{k} {v}" for k, v in info["versions"].items())))
    _print_fields(path, lines)
    val = info.get("validation")
    if val:
        print_table(f"validation ({val.get('distance')}, {val.get('samples')} held-out samples)",
                    ["solver", "distance", "rmse"],
                    [["base", _fmt(val.get("base")), _fmt(val.get("base_rmse"))],
                     ["learned", _fmt(val.get("learned")), _fmt(val.get("learned_rmse"))]]
                    + ([[f"best classical ({val['best_classical']}; rmse: {val['best_classical_rmse_solver']})",
                         _fmt(val["best_classical_distance"]), _fmt(val["best_classical_rmse"])]]
                       if "best_classical" in val else []))
    print_table("evaluations", ["m", "eval sigma", "grid sigma"],
                [[m, f"{e:.6g}", f"{g:.6g}"] for m, (e, g) in enumerate(zip(s.eval_sigmas, s.sigmas))]
                + [["out", "-", f"{s.sigma_end:.6g}"]])
    cols = ["row", "x_T", *[f"D{j}" for j in range(s.nfe)]]
    print_table("table (row m: x_m = a_m x_T + sum_j b_mj D_j; last row = output)", cols,
                [[m if m < s.nfe else "out", *[f"{v:.6g}" if j <= m else "" for j, v in enumerate(row)]]
                 for m, row in enumerate(s.table)])


def inspect_cmd(
    path: Path = typer.Argument(..., help="A solver file (.json), an exported graph (.onnx) or a scheduler folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a solver file's table, sigmas and provenance, an exported graph's metadata, or how to use a
    scheduler folder written by export-scheduler."""
    if path.is_dir():
        from .export_scheduler import scheduler_folder_report

        if not (path / "scheduler_config.json").is_file():
            raise S4SError(f"{path} is a folder without scheduler_config.json; pass a solver file (.json), a graph "
                           "(.onnx), its sidecar (.json), or a scheduler folder written by `s4s-export "
                           "export-scheduler`")

        console.print(scheduler_folder_report(path), highlight=False, markup=False)
        return
    if path.suffix == ".onnx":
        from ..export import inspect_onnx

        report = inspect_onnx(path)
        if json_out:
            print_json(report)
        else:
            _print_fields(path, list(report.items()))
        return
    if not path.exists():
        raise S4SError(f"{path} does not exist; pass a solver file (.json), a graph (.onnx), its sidecar (.json) "
                       "or a scheduler folder")
    sidecar = _sidecar(path)
    if sidecar is not None:
        if json_out:
            print_json(sidecar)
        else:
            _print_fields(path, list(sidecar.items()))
        return
    _solver_report(path, json_out)


def _print_fields(path: Path, fields: list[tuple[object, object]]) -> None:
    """`path` in bold, then one `key  value` line per field; file contents are printed as text, never as markup."""
    width = max((len(str(k)) for k, _ in fields), default=0)
    console.print(Text(str(path), style="bold"), highlight=False, soft_wrap=True)
    for k, v in fields:
        console.print(f"  {str(k):<{width}}  {v}", highlight=False, markup=False, soft_wrap=True)


def _sidecar(path: Path) -> dict | None:
    """The document of a graph's JSON sidecar (written by `s4s-export build`), or None for other files."""
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None  # the solver-file reader names the problem
    return doc if isinstance(doc, dict) and doc.get("format") == SIDECAR_FORMAT else None


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
