"""The model registry: names usable with `--model`, how to load them, and what they are."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .denoiser import Denoiser
from .errors import S4SError, choice_error
from .teacher import DEFAULT_NET_TEACHER, REFERENCE_TEACHER, TeacherSpec


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


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    MODELS[spec.name] = spec


def get_model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise choice_error("model", name, list(MODELS))
    return MODELS[name]


def load_model(name: str, checkpoint: str | None = None, random_weights: bool = False) -> Denoiser:
    """Load a registered model in eval mode with gradients off.

    `checkpoint` (a file path) and `random_weights` (the exact architecture, random weights)
    apply to checkpoint presets only.
    """
    spec = get_model_spec(name)
    if checkpoint is not None or random_weights:
        if not spec.accepts_checkpoint:
            raise S4SError(f"model {name!r} is bundled: --checkpoint and --random-weights apply to checkpoint presets "
                           f"({', '.join(n for n, s in MODELS.items() if s.accepts_checkpoint) or 'none registered'})")
        model = spec.load(checkpoint=checkpoint, random_weights=random_weights)
    else:
        model = spec.load()
    if not isinstance(model, Denoiser):
        raise S4SError(f"model {name!r} did not load as a denoiser")
    return model.eval().requires_grad_(False)


def _register_builtins() -> None:
    from . import gmm
    from .networks import demo
    from .presets import PRESETS

    register(ModelSpec("demo", "small EDM SongUNet trained on sklearn digits (bundled)", "1x16x16", "none",
                       demo.load_demo, demo.DEMO_ASSET.exists))
    register(ModelSpec("gmm", "exact Gaussian mixture fitted to sklearn digits (closed-form denoiser)", "1x8x8",
                       "none", lambda: gmm.digits_gmm(False), gmm.DIGITS_GMM.exists, True, REFERENCE_TEACHER, "logsnr"))
    register(ModelSpec("gmm-cond", "class-conditional exact Gaussian mixture (10 digit classes)", "1x8x8", "class",
                       lambda: gmm.digits_gmm(True), gmm.DIGITS_GMM.exists, True, REFERENCE_TEACHER, "logsnr"))
    for p in PRESETS.values():
        register(ModelSpec(p.name, p.description, p.resolution, p.conditioning, p.load, p.is_cached,
                           teacher=p.teacher, schedule=p.schedule, accepts_checkpoint=True))


_register_builtins()
