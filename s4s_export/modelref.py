"""What `--model` names, and the one place that checks and loads it.

A `ModelRef` is the model part of a request: the `--model` text, and `--checkpoint`,
`--random-weights` and `--config`. Its kind is `name` for a registered model name
(`models.MODELS`), else the prefix before the first `:` (`diffusers:PATH`, ...). Each kind is a
`RefKind` in `REF_KINDS`; loaders for other kinds add theirs with `register_ref_kind`.

Importing this module does not import torch: `check_model` validates a reference (names, files,
extras) before a command loads torch, so bad input is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import S4SError, choice_error
from .families.refkinds import FAMILY_KINDS
from .models import MODELS, ModelSpec

if TYPE_CHECKING:
    from .denoiser import Denoiser


@dataclass(frozen=True)
class ModelRef:
    """A model as a request names it: `text` (a registered name or `kind:target`) and its options."""

    text: str
    checkpoint: str | None = None
    random_weights: bool = False
    config: str | None = None  # --config: the model's config file (kinds with `accepts_config`)

    @property
    def kind(self) -> str:
        """`name` for a registered name (or a text without `:`), else the prefix before the first `:`."""
        if self.text in MODELS or ":" not in self.text:
            return "name"
        return self.text.split(":", 1)[0]

    @property
    def target(self) -> str:
        """The part after the kind's prefix (the name itself for kind `name`)."""
        return self.text if self.kind == "name" else self.text.split(":", 1)[1]

    def cli_args(self) -> list[str]:
        """The command-line options that give this reference: `--model TEXT [--checkpoint PATH] ...`."""
        args = ["--model", self.text]
        if self.checkpoint:
            args += ["--checkpoint", self.checkpoint]
        if self.random_weights:
            args.append("--random-weights")
        if self.config:
            args += ["--config", self.config]
        return args


def as_model_ref(model: ModelRef | str) -> ModelRef:
    """A reference as given, or a plain `--model` text without options."""
    return model if isinstance(model, ModelRef) else ModelRef(model)


@dataclass(frozen=True)
class RefKind:
    """One kind of model reference: how to check it, and how `--model` help and errors spell it."""

    check: Callable[[ModelRef], ModelSpec]  # validate without torch where possible; S4SError otherwise
    usage: str  # e.g. `diffusers:PATH`
    accepts_config: bool = False


REF_KINDS: dict[str, RefKind] = {}


def register_ref_kind(name: str, kind: RefKind) -> None:
    REF_KINDS[name] = kind


def ref_usage() -> str:
    """`a registered name (see `s4s-export models`)` plus the usage of every other registered kind."""
    others = [k.usage for name, k in REF_KINDS.items() if name != "name"]
    return "a registered name (see `s4s-export models`)" + (f" or {', '.join(others)}" if others else "")


def ref_kind(ref: ModelRef) -> RefKind:
    kind = REF_KINDS.get(ref.kind)
    if kind is None:
        raise S4SError(f"unknown model reference {ref.text!r} (no model kind {ref.kind!r}): --model takes "
                       f"{ref_usage()}")
    return kind


def check_model(ref: ModelRef) -> ModelSpec:
    """The spec a reference resolves to, after checking it (and that its weights are at hand), without torch."""
    kind = ref_kind(ref)
    if ref.config is not None and not kind.accepts_config:
        takers = [k.usage for k in REF_KINDS.values() if k.accepts_config]
        raise S4SError(f"--config applies to {' and '.join(takers) or 'no registered model kind'} references, not to "
                       f"{ref.text!r}; leave out --config")
    return kind.check(ref)


def load_model(ref: ModelRef | str) -> Denoiser:
    """Load a referenced model in eval mode with gradients off (a plain string is a registered name)."""
    from .denoiser import Denoiser

    ref = as_model_ref(ref)
    spec = check_model(ref)
    if ref.checkpoint is not None or ref.random_weights:
        model = spec.load(checkpoint=ref.checkpoint, random_weights=ref.random_weights)
    else:
        model = spec.load()
    if not isinstance(model, Denoiser):
        raise S4SError(f"model {ref.text!r} did not load as a denoiser")
    return model.eval().requires_grad_(False)


def _check_name(ref: ModelRef) -> ModelSpec:
    """A registered name: `--checkpoint` and `--random-weights` for checkpoint presets only; weights fetched if
    allowed."""
    if ref.text not in MODELS:
        raise choice_error("model", ref.text, list(MODELS))
    spec = MODELS[ref.text]
    if (ref.checkpoint is not None or ref.random_weights) and not spec.accepts_checkpoint:
        raise S4SError(f"model {ref.text!r} is bundled: --checkpoint and --random-weights apply to checkpoint presets "
                       f"({', '.join(n for n, s in MODELS.items() if s.accepts_checkpoint) or 'none registered'})")
    if ref.checkpoint is not None and not Path(ref.checkpoint).is_file():
        raise S4SError(f"checkpoint file not found: {ref.checkpoint}; --checkpoint takes an existing EDM pickle, torch "
                       f"state dict or safetensors file")
    if ref.checkpoint is None and not ref.random_weights and spec.fetch_weights is not None:
        spec.fetch_weights()
    return spec


register_ref_kind("name", RefKind(_check_name, "a registered name"))
for _name, (_check, _usage, _accepts_config) in FAMILY_KINDS.items():
    register_ref_kind(_name, RefKind(_check, _usage, _accepts_config))
