"""The `s4s-export` command line.

Imports stay inside `main` and `build_app` so that an interrupt while the CLI starts (importing typer, rich
and the commands takes a while) is an `interrupted` line, not a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NoReturn

from . import __version__

if TYPE_CHECKING:
    import typer

# What the `torch` extra adds to the torch-free serving install (pyproject.toml).
TORCH_EXTRA = ("torch", "scipy", "onnxscript", "safetensors")
DEBUG_FLAG = "--debug"  # anywhere on the command line: unexpected errors show their traceback
DEBUG_ENV = "S4S_DEBUG"


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit."""
    sys.stderr.write(f"{message}\n")
    sys.exit(code)


def build_app() -> typer.Typer:
    """The typer app with every command registered."""
    import typer

    from .commands import bench, build, export_scheduler, inspect, learn, models, sample
    from .commands import eval as eval_

    app = typer.Typer(
        name="s4s-export",
        help="Learn a few-step S4S solver for a diffusion model and bake the sampler into one ONNX graph.",
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    def show_version(value: bool) -> None:
        if value:
            typer.echo(f"s4s-export {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                     help="Print the version and exit."),
        debug: bool = typer.Option(False, DEBUG_FLAG, help="Show the traceback of an unexpected error "
                                                           f"(also {DEBUG_ENV}=1; may follow the command too)."),
    ) -> None:
        """Learn a few-step S4S solver for a diffusion model and bake the sampler into one ONNX graph."""

    for command in (learn, build, sample, eval_, bench, models, inspect, export_scheduler):
        command.register(app)
    return app


def __getattr__(name: str):  # `from s4s_export.cli import app` (tests, embedding) builds it on first use
    if name == "app":
        return build_app()
    raise AttributeError(name)


def usage_error(e: typer.TyperException) -> str:
    """Typer's (click's) usage error as one line, with a pointer to the command's --help."""
    ctx = getattr(e, "ctx", None)
    hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    return f"error: {e.format_message().rstrip('.')}{hint}"


def unexpected_error(e: BaseException) -> str:
    """An unexpected exception as one line, pointing at --debug for the traceback."""
    text = " ".join(str(e).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return (f"error: unexpected {type(e).__name__}" + (f": {text}" if text else "")
            + f"; rerun with {DEBUG_FLAG} for the traceback and report it")


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """argv without --debug (which may stand anywhere), and whether it was given (or S4S_DEBUG is set)."""
    args = [a for a in argv if a != DEBUG_FLAG]
    return args, len(args) != len(argv) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run(argv: list[str]) -> int:
    """Run the CLI on `argv` and return the exit code; every failure is one line on stderr.

    Bad input (S4SError, a bad option) exits 2; an interrupt 130; anything unexpected 1, unless --debug.
    """
    args, debug = split_debug(argv)
    try:
        app = build_app()
        # Not standalone: usage errors reach us instead of being drawn as a box; --help returns 0.
        code = app(args=args or ["--help"], prog_name="s4s-export", standalone_mode=False)
    except KeyboardInterrupt:
        return _say("interrupted", 130)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else _say(str(e.code), 1))
    except Exception as e:
        message, code = classify(e)
        if debug and (code != 2 or isinstance(e, MemoryError)):  # user errors stay one line
            raise
        return _say(message, code)
    if code == 130:  # typer turns an interrupt inside a command into exit code 130
        return _say("interrupted", 130)
    return code or 0


def classify(e: Exception) -> tuple[str, int]:
    """The one line and exit code for an exception out of a command."""
    import typer

    from .errors import S4SError

    if isinstance(e, S4SError):
        return f"error: {e}", 2
    if isinstance(e, typer.TyperException):  # bad option or value (typer >= 0.26, which vendors click)
        return usage_error(e), 2
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in TORCH_EXTRA:
        # learn, build, eval, bench on a serving install
        return (f"error: this command needs {e.name}, which the serving install leaves out: pip install "
                "'s4s-export[torch]' (on a machine without a GPU install a CPU build of torch first, see the "
                "README)"), 2
    if isinstance(e, MemoryError):
        return ("error: out of memory; ask for fewer samples or a smaller batch "
                f"(rerun with {DEBUG_FLAG} for the traceback)"), 2
    return unexpected_error(e), 1


def _say(message: str, code: int) -> int:
    sys.stderr.write(f"{message}\n")
    return code


def main() -> None:
    """Console entry point: user errors are one line on stderr with exit code 2; no arguments print the help."""
    # Idle OpenMP threads sleep instead of spinning: with the default, torch's CPU threads spin on a
    # busy machine and a forward pass can take 20-40x longer (measured on the 2-core dev box).
    # torch is not imported yet at this point, so the setting takes effect.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = run(sys.argv[1:])
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = _say("interrupted", 130)
    sys.exit(code)


if __name__ == "__main__":  # `python -m s4s_export.cli` (e.g. under torchrun), like `python -m s4s_export`
    main()
