"""Options, option parsing and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import S4SError
from ..modelref import ModelRef, check_model
from ..prompts import check_prompt_options

console = Console()

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
GuidanceOpt = Annotated[float, typer.Option("--guidance-scale", help="Classifier-free guidance inside the model "
                                                                     "(default: the model's own).")]


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


def parse_ints(text: str, what: str = "--nfe") -> list[int]:
    """`3,4,5` -> [3, 4, 5]; every value a positive integer."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise S4SError(f"{what} takes comma-separated positive integers, e.g. 3,4,5; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise S4SError(f"{what} takes comma-separated positive integers, e.g. 3,4,5; got {text!r}")
    return values


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
