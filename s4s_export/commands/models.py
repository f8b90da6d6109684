"""`s4s-export models`: the models `--model` accepts."""

from __future__ import annotations

import typer

from ..models import MODELS
from .common import print_json, print_table


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


def register(app: typer.Typer) -> None:
    app.command("models")(models)
