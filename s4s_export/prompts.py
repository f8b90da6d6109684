"""Prompts as learning data for text-conditioned models: `--prompts FILE` (torch-free; docs/learning.md).

A prompts file is plain text (one prompt per line; blank lines and lines starting with `#` are
skipped) or JSON Lines (`.jsonl`: objects with `prompt` and optional `negative_prompt`). Every
fifth prompt (index 4, 9, ...) is held out: validation and `eval` use only those, training the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import S4SError

HELD_OUT_EVERY = 5


@dataclass(frozen=True)
class Prompt:
    text: str
    negative: str = ""


def read_prompts(path: str | Path) -> list[Prompt]:
    """The prompts of a .txt or .jsonl file; S4SError naming the line at fault."""
    path = Path(path)
    if not path.is_file():
        raise S4SError(f"prompts file not found: {path}; --prompts takes a text file (one prompt per line) or .jsonl")
    prompts: list[Prompt] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or (line.startswith("#") and path.suffix != ".jsonl"):
            continue
        if path.suffix == ".jsonl":
            try:
                doc = json.loads(line)
            except ValueError as e:
                raise S4SError(f"{path}:{n} is not JSON ({e}); a .jsonl prompts file has one "
                               f'{{"prompt": ..., "negative_prompt": ...}} object per line') from None
            if not isinstance(doc, dict) or not isinstance(doc.get("prompt"), str) \
                    or not isinstance(doc.get("negative_prompt", ""), str):
                raise S4SError(f'{path}:{n} needs a string "prompt" (and optionally a string "negative_prompt")')
            prompts.append(Prompt(doc["prompt"], doc.get("negative_prompt", "")))
        else:
            prompts.append(Prompt(line))
    check_prompt_count(len(prompts), str(path))
    return prompts


def check_prompt_count(n: int, where: str) -> None:
    if n < 2:
        raise S4SError(f"{where} has {n} prompt(s); give at least 2 (every {HELD_OUT_EVERY}th is held out for "
                       f"validation, the first always trains)")


def split_prompts(n: int) -> tuple[list[int], list[int]]:
    """(training, held-out) prompt indices: every HELD_OUT_EVERY-th held out, at least one of each."""
    held = [i for i in range(n) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1] or [n - 1]
    return [i for i in range(n) if i not in held], held


def check_prompt_options(conditioning: str, prompts: str | None, embeddings: str | None, what: str) -> None:
    """Before torch: prompts go with text models, one source at most, and the file reads (prompts)."""
    if prompts and embeddings:
        raise S4SError("pass either --prompts FILE or --embeddings FILE, not both")
    if conditioning != "text":
        if prompts or embeddings:
            raise S4SError(f"--prompts/--embeddings apply to text-conditioned models; this model's conditioning is "
                           f"{conditioning}")
        return
    if not (prompts or embeddings):
        raise S4SError(f"{what} on a text-conditioned model needs prompts: --prompts FILE (one per line, or .jsonl) "
                       f"or --embeddings FILE.safetensors (docs/learning.md)")
    if prompts:
        read_prompts(prompts)
