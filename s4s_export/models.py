"""The model registry: names usable with `--model`, how to load them, and what they are.

Importing the registry does not import torch: commands check the model and its weights
(`require_weights`) before loading torch, so a missing checkpoint is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import S4SError, choice_error
from .paths import DEMO_ASSET, DIGITS_GMM
from .teacher import DEFAULT_NET_TEACHER, REFERENCE_TEACHER, TeacherSpec

if TYPE_CHECKING:
    from .denoiser import Denoiser


@dataclass(frozen=True)
class ModelSpec:
    """A named model: loader, availability check, and the defaults later stages use."""

    name: str
    description: str
    resolution: str  # e.g. "1x16x16"
    conditioning: str  # none | class | text
    load: Callable[..., Denoiser]
    available: Callable[[], bool]
    exact: bool = False  # closed-form denoiser: errors are measured against the reference ODE solution
    teacher: TeacherSpec = DEFAULT_NET_TEACHER
    schedule: str = "edm"  # default schedule for classical solvers on this model
    accepts_checkpoint: bool = False  # presets take --checkpoint PATH and --random-weights
    fetch_weights: Callable[[], object] | None = None  # presets: find or download the weights, or fail with a hint


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    MODELS[spec.name] = spec


def get_model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise choice_error("model", name, list(MODELS))
    return MODELS[name]


def require_weights(name: str, checkpoint: str | None = None, random_weights: bool = False) -> ModelSpec:
    """Check the model name and that its weights are at hand (downloading them if allowed), without torch."""
    spec = get_model_spec(name)
    if (checkpoint is not None or random_weights) and not spec.accepts_checkpoint:
        raise S4SError(f"model {name!r} is bundled: --checkpoint and --random-weights apply to checkpoint presets "
                       f"({', '.join(n for n, s in MODELS.items() if s.accepts_checkpoint) or 'none registered'})")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise S4SError(f"checkpoint file not found: {checkpoint}; --checkpoint takes an existing EDM pickle, torch "
                       f"state dict or safetensors file")
    if checkpoint is None and not random_weights and spec.fetch_weights is not None:
        spec.fetch_weights()
    return spec


def load_model(name: str, checkpoint: str | None = None, random_weights: bool = False) -> Denoiser:
    """Load a registered model in eval mode with gradients off.

    `checkpoint` (a file path) and `random_weights` (the exact architecture, random weights)
    apply to checkpoint presets only.
    """
    from .denoiser import Denoiser

    spec = get_model_spec(name)
    if checkpoint is not None or random_weights:
        require_weights(name, checkpoint, random_weights)
        model = spec.load(checkpoint=checkpoint, random_weights=random_weights)
    else:
        model = spec.load()
    if not isinstance(model, Denoiser):
        raise S4SError(f"model {name!r} did not load as a denoiser")
    return model.eval().requires_grad_(False)


def _load_demo() -> Denoiser:
    from .networks.demo import load_demo

    return load_demo()


def _load_gmm(conditional: bool) -> Denoiser:
    from .gmm import digits_gmm

    return digits_gmm(conditional)


def _register_builtins() -> None:
    from .presets import PRESETS

    register(ModelSpec("demo", "small EDM SongUNet trained on sklearn digits (bundled)", "1x16x16", "none",
                       _load_demo, DEMO_ASSET.exists))
    register(ModelSpec("gmm", "exact Gaussian mixture fitted to sklearn digits (closed-form denoiser)", "1x8x8",
                       "none", lambda: _load_gmm(False), DIGITS_GMM.exists, True, REFERENCE_TEACHER, "logsnr"))
    register(ModelSpec("gmm-cond", "class-conditional exact Gaussian mixture (10 digit classes)", "1x8x8", "class",
                       lambda: _load_gmm(True), DIGITS_GMM.exists, True, REFERENCE_TEACHER, "logsnr"))
    for p in PRESETS.values():
        register(ModelSpec(p.name, p.description, p.resolution, p.conditioning, p.load, p.is_cached,
                           teacher=p.teacher, schedule=p.schedule, accepts_checkpoint=True,
                           fetch_weights=p.weights_path))


_register_builtins()
