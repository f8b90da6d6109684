"""Options, option parsing and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import S4SError
from ..limits import GRAPH_NFE_MAX, check_finite, check_fits, check_guidance
from ..modelref import ModelRef, check_model
from ..prompts import check_prompt_options

console = Console(markup=False)  # output holds user text (paths, file contents, metadata): never read as markup

# The model options of every command that loads a model (`model_ref` turns them into one ModelRef).
ModelOpt = Annotated[str, typer.Option("--model", help="Model: a registered name (see `s4s-export models`) or a "
                                                       "reference KIND:PATH, e.g. diffusers:PATH.")]
CheckpointOpt = Annotated[str, typer.Option("--checkpoint", help="Checkpoint file for a preset model.")]
RandomWeightsOpt = Annotated[bool, typer.Option("--random-weights",
                                                help="A preset's architecture with random weights.")]
ModelConfigOpt = Annotated[str, typer.Option("--config", help="Model config file (compvis references).")]


PromptsOpt = Annotated[str, typer.Option("--prompts", help="Text models: prompts file, one per line or .jsonl with "
                                                          "prompt/negative_prompt (every 5th held out).")]
EmbeddingsOpt = Annotated[str, typer.Option("--embeddings", help="Text models: precomputed prompt embeddings "
                                                                 "(.safetensors, keys in docs/learning.md).")]
GuidanceOpt = Annotated[float, typer.Option("--guidance-scale", callback=lambda ctx, param, value: guidance_number(
    ctx, param, value), help="Classifier-free guidance inside the model (default: the model's own).")]


def model_and_prompts(model: str, checkpoint: str | None, random_weights: bool, config: str | None,
                      prompts: str | None, embeddings: str | None, what: str) -> ModelRef:
    """`model_ref`, and the prompt options checked against the model's conditioning (before torch)."""
    ref = ModelRef(model, checkpoint, random_weights, config)
    check_prompt_options(check_model(ref).conditioning, prompts, embeddings, what)
    return ref


def model_ref(model: str, checkpoint: str | None = None, random_weights: bool = False,
              config: str | None = None) -> ModelRef:
    """The model options as one checked ModelRef: a bad name or a missing file fails here, before torch loads."""
    ref = ModelRef(model, checkpoint, random_weights, config)
    check_model(ref)
    return ref


UNKNOWN_SAMPLE_ELEMENTS = 4 * 64 * 64  # a model whose resolution is not known before it loads (e.g. a latent)


def check_model_memory(ref: ModelRef, count: int, what: str, copies: int, fix: str) -> int:
    """`count` samples of the model's shape, `copies` float32 tensors each, must fit this machine
    (limits.check_fits)."""
    dims = [int(d) for d in re.findall(r"\d+", check_model(ref).resolution)]
    elements = math.prod(dims) if dims else UNKNOWN_SAMPLE_ELEMENTS
    return check_fits(count, 4 * copies * elements, what, f"{copies} float32 tensors per sample", fix)


def parse_ints(text: str, what: str = "--nfe", most: int | None = None) -> list[int]:
    """`3,4,5` -> [3, 4, 5]; every value a positive integer (at most `most`)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise S4SError(f"{what} takes comma-separated positive integers, e.g. 3,4,5; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise S4SError(f"{what} takes comma-separated positive integers, e.g. 3,4,5; got {text!r}")
    if most is not None and max(values) > most:
        raise S4SError(f"{what} {max(values)} is too large: at most {most}; got {text!r}")
    return values


def option_name(ctx: typer.Context | None, param: object) -> str:
    opts = getattr(param, "opts", None)
    return max(opts, key=len) if opts else str(getattr(param, "name", "value"))


def positive_number(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: a finite number > 0 (learning rates), checked as the option is parsed."""
    return None if value is None else check_finite(value, option_name(ctx, param), positive=True)


def nonnegative_number(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: a finite number >= 0."""
    return None if value is None else check_finite(value, option_name(ctx, param), lo=0.0)


def graph_nfe(ctx: typer.Context, param: typer.CallbackParam, value: int | None) -> int | None:
    """Option callback: the NFE of a baked graph, at most limits.GRAPH_NFE_MAX."""
    if value is not None and value > GRAPH_NFE_MAX:
        raise S4SError(f"--nfe {value} is too large for one graph: at most {GRAPH_NFE_MAX} (the graph unrolls one "
                       "network call per evaluation and exports at about 1.5 s each on CPU); learn a few-step solver "
                       "instead")
    return value


def guidance_number(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: a finite guidance scale within limits.GUIDANCE_MAX."""
    return None if value is None else check_guidance(value, option_name(ctx, param))


def parse_names(text: str, what: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise S4SError(f"{what} needs at least one name")
    return names


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(v) for v in r])
    console.print(table)
