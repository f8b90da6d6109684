"""The model registry: names usable with `--model`, how to load them, and what they are.

Importing the registry does not import torch. `modelref.check_model` and `modelref.load_model`
resolve a `--model` reference (a name here, or another kind of reference) to a `ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .paths import DEMO_ASSET, DIGITS_GMM
from .teacher import DEFAULT_NET_TEACHER, REFERENCE_TEACHER, TeacherSpec

if TYPE_CHECKING:
    from .denoiser import Denoiser


@dataclass(frozen=True)
class ModelSpec:
    """A model: loader, availability check, and the defaults later stages use.

    `load` is called with no arguments, or with `checkpoint=` and `random_weights=` when the reference
    gives them (models with `accepts_checkpoint`).
    """

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
