"""`s4s-export export-scheduler SOLVER.json --out DIR [--for diffusers:PATH]`: a diffusers scheduler folder.

The folder holds one scheduler_config.json for `S4SScheduler.from_pretrained(DIR)`: the solver
table, its sigmas, the model's own scheduler config and the solver file's provenance
(docs/solvers.md, "diffusers scheduler").
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import typer

from ..errors import S4SError
from ..fileio import atomic_write_text
from ..outputs import check_output_folder
from ..solverfile import check_model, load_solver_file
from .common import console

PREFIX = "diffusers:"


def usage(folder: Path, nfe: int, model: str | None) -> str:
    """The Python lines that put the scheduler into a pipeline."""
    pipe = f'DiffusionPipeline.from_pretrained("{model[len(PREFIX):]}")' if model else "...  # the model's pipeline"
    return "\n".join([
        "from diffusers import DiffusionPipeline",
        "from s4s_export.integrations.diffusers_scheduler import S4SScheduler",
        f"pipe = {pipe}",
        f'pipe.scheduler = S4SScheduler.from_pretrained("{folder}")',
        f"images = pipe(..., num_inference_steps={nfe}).images  # exactly the learned NFE",
    ])


def scheduler_folder_report(folder: Path) -> str:
    """What `inspect DIR` prints for a folder written by export-scheduler."""
    path = folder / "scheduler_config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise S4SError(f"{folder} has no readable scheduler_config.json; write one with `s4s-export "
                       "export-scheduler`") from None
    if doc.get("_class_name") != "S4SScheduler" or not isinstance(doc.get("solver"), dict):
        raise S4SError(f"{path} is not an S4SScheduler config (class {doc.get('_class_name')!r}); inspect takes a "
                       "solver file, an .onnx graph or a folder written by `s4s-export export-scheduler`")
    solver, provenance = doc["solver"], doc.get("provenance") or {}
    model = (provenance.get("model") or {}).get("name")
    kind = doc.get("model_scheduler", {}).get("_class_name", "?")
    head = (f"{folder}: S4SScheduler, solver {solver.get('name')} (NFE {solver.get('nfe')}, space "
            f"{solver.get('space', 've')}), method {provenance.get('method', '-')}, for {model or '-'} ({kind} config)")
    return head + "\n\n" + usage(folder, int(solver.get("nfe", 0)),
                                 model if model and model.startswith(PREFIX) else None)


def export_scheduler(
    solver_path: Path = typer.Argument(..., help="A solver file (.json) learned for a diffusers model."),
    out: Path = typer.Option(..., "--out", help="Folder to write scheduler_config.json into."),
    for_model: str = typer.Option(None, "--for",
                                  help="diffusers:PATH of the model (default: the solver file's model)."),
) -> None:
    """Write a diffusers scheduler folder (S4SScheduler) that runs a solver file inside diffusers pipelines."""
    check_output_folder(out, "--out")
    from ..families.diffusers_folder import DiffusersFolder, load_diffusers
    from ..integrations.diffusers_scheduler import S4SScheduler

    sf = load_solver_file(solver_path)
    target = for_model or sf.model.get("name")
    if not target or not target.startswith(PREFIX):
        raise S4SError(f"{solver_path} does not name a diffusers model ({target or 'no model'!r}); pass "
                       f"--for diffusers:PATH, the model's local diffusers folder")
    ref = SimpleNamespace(target=target[len(PREFIX):], checkpoint=None, random_weights=False, config=None)
    folder = DiffusersFolder(ref.target)
    if sf.model:  # classical solver files carry no model
        identity = load_diffusers(ref).identity_dict()
        # The folder's path may be spelled differently than at learning time: weights and shape decide.
        if (sf.model.get("weights_sha256"), list(sf.model.get("shape", []))) != (identity["weights_sha256"],
                                                                                 identity["shape"]):
            check_model(sf, identity, solver_path)
    scheduler = S4SScheduler.from_solver_file(sf, folder.scheduler_config)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "scheduler_config.json", scheduler.to_json_string())
    console.print(f"wrote {out / 'scheduler_config.json'}\n", highlight=False)
    console.print(usage(out, sf.solver.nfe, target), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("export-scheduler")(export_scheduler)
