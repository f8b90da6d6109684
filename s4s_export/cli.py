"""The `s4s-export` command line."""

from __future__ import annotations

import os
import sys

import typer

from .commands import bench, build, inspect, learn, models, sample
from .commands import eval as eval_
from .errors import S4SError

app = typer.Typer(
    name="s4s-export",
    help="Learn a few-step S4S solver for a diffusion model and bake the sampler into one ONNX graph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (learn, build, sample, eval_, bench, models, inspect):
    command.register(app)


def main() -> None:
    """Console entry point: user errors are one line on stderr with exit code 2."""
    # Idle OpenMP threads sleep instead of spinning: with the default, torch's CPU threads spin on a
    # busy machine and a forward pass can take 20-40x longer (measured on the 2-core dev box).
    # torch is not imported yet at this point, so the setting takes effect.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except S4SError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
