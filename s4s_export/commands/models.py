"""`s4s-export models`: the registered model names `--model` accepts, and the other reference kinds."""

from __future__ import annotations

import typer

from ..modelref import REF_KINDS
from ..models import MODELS
from .common import console, print_json, print_table


def models(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """List the models: name, resolution, conditioning, and whether the weights are here."""
    rows = [{"name": s.name, "resolution": s.resolution, "conditioning": s.conditioning,
             "weights": "local" if s.available() else "missing", "exact": s.exact, "description": s.description}
            for s in MODELS.values()]
    if json_out:
        print_json({"models": rows})
        return
    print_table("models", ["name", "resolution", "conditioning", "weights", "description"],
                [[r["name"], r["resolution"], r["conditioning"], r["weights"], r["description"]] for r in rows])
    others = [k.usage for name, k in REF_KINDS.items() if name != "name"]
    if others:
        console.print(f"--model also takes: {', '.join(others)}", highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
