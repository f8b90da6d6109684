"""`s4s-export inspect` (placeholder until its issue lands; replaced by the real command)."""

from __future__ import annotations

import typer

from ..errors import S4SError


def inspect_cmd() -> None:
    """Not available yet."""
    raise S4SError("`s4s-export inspect` is not available in this build yet")


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
