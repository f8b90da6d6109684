"""`s4s-export bench` (placeholder until its issue lands; replaced by the real command)."""

from __future__ import annotations

import typer

from ..errors import S4SError


def bench_cmd() -> None:
    """Not available yet."""
    raise S4SError("`s4s-export bench` is not available in this build yet")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
