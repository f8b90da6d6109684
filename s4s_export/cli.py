"""The `s4s-export` command line."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from .commands import bench, build, export_scheduler, inspect, learn, models, sample
from .commands import eval as eval_
from .errors import S4SError

app = typer.Typer(
    name="s4s-export",
    help="Learn a few-step S4S solver for a diffusion model and bake the sampler into one ONNX graph.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (learn, build, sample, eval_, bench, models, inspect, export_scheduler):
    command.register(app)

# What the `torch` extra adds to the torch-free serving install (pyproject.toml).
TORCH_EXTRA = ("torch", "scipy", "onnxscript", "safetensors")


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit."""
    sys.stderr.write(f"{message}\n")
    sys.exit(code)


def usage_error(e: typer.TyperException) -> str:
    """Typer's (click's) usage error as one line, with a pointer to the command's --help."""
    ctx = getattr(e, "ctx", None)
    hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    return f"error: {e.format_message().rstrip('.')}{hint}"


def main() -> None:
    """Console entry point: user errors are one line on stderr with exit code 2; no arguments print the help."""
    # Idle OpenMP threads sleep instead of spinning: with the default, torch's CPU threads spin on a
    # busy machine and a forward pass can take 20-40x longer (measured on the 2-core dev box).
    # torch is not imported yet at this point, so the setting takes effect.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        # Not standalone: usage errors reach us instead of being drawn as a box; --help returns 0.
        code = app(args=sys.argv[1:] or ["--help"], standalone_mode=False)
    except S4SError as e:
        fail(f"error: {e}")
    except ModuleNotFoundError as e:  # learn, build, eval, bench on a serving install
        if (e.name or "").split(".")[0] not in TORCH_EXTRA:
            raise
        fail(f"error: this command needs {e.name}, which the serving install leaves out: pip install 's4s-export[torch]' "
             "(on a machine without a GPU install a CPU build of torch first, see the README)")
    except typer.TyperException as e:  # bad option or value (typer >= 0.26, which vendors click)
        fail(usage_error(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if code == 130:  # typer turns an interrupt inside a command into exit code 130
        fail("interrupted", 130)
    sys.exit(code or 0)
