"""`python:MODULE:FACTORY` model references: the user's own code builds the model.

MODULE is a dotted module name (imported with the current directory on the path) or a `.py` file;
FACTORY is a callable in it, called with no arguments. It returns either

- a `Denoiser` (s4s_export/denoiser.py), used as it is, or
- a k-diffusion-style denoiser `model(x, sigma, **extra) -> x0_hat` (x = x0 + sigma * eps, sigma of
  shape [B]), which must carry these attributes:
    `shape`      (C, H, W) of one sample (required);
    `sigma_min`, `sigma_max`  the model's sigma range, floats or 0-dim tensors (required; k-diffusion's
                 `DiscreteSchedule` wrappers have them);
    `num_classes` optional int: class-conditional, labels [B] are passed as `cond=`, label
                 `num_classes` is the null label (as for every Denoiser);
    `sigma_data` optional float (default 0.5).
  An `nn.Module` wrapper becomes a submodule, so its weights make the model identity.

This is the only reference kind that runs code, and the code is the user's.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import S4SError

if TYPE_CHECKING:
    import torch

    from ..denoiser import Denoiser, ModelInfo
    from ..models import ModelSpec

REQUIRED_ATTRIBUTES = ("shape", "sigma_min", "sigma_max")


class ModelReference(Protocol):
    """What a model reference carries (s4s_export/models.py `ModelRef`)."""

    target: str
    checkpoint: str | None
    random_weights: bool
    config: str | None


def parse_target(target: str) -> tuple[str, str]:
    """`MODULE:FACTORY` -> (module, factory); the module part may be a `.py` path (which may contain ':')."""
    module, sep, factory = target.rpartition(":")
    if not sep or not module or not factory.isidentifier():
        raise S4SError(f"python:{target} is not python:MODULE:FACTORY (e.g. python:mymodels:make_denoiser or "
                       f"python:path/to/file.py:make_denoiser)")
    return module, factory


def _import(module: str) -> object:
    try:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise S4SError(f"python module file not found: {module}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
        added = os.getcwd() not in sys.path
        if added:
            sys.path.insert(0, os.getcwd())
        try:
            return importlib.import_module(module)
        finally:
            if added:
                sys.path.remove(os.getcwd())
    except ModuleNotFoundError as e:
        raise S4SError(f"cannot import {module!r} for python:{module}:...: {e}; give an importable module name "
                       f"or a .py file path") from None
    except S4SError:
        raise
    except Exception as e:  # noqa: BLE001 (the user's module failed while importing)
        raise S4SError(f"importing {module!r} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                       f"; fix the module") from None


def _factory(target: str) -> Callable[[], object]:
    module, name = parse_target(target)
    factory = getattr(_import(module), name, None)
    if not callable(factory):
        raise S4SError(f"{module} has no callable {name!r}; python:MODULE:FACTORY names a function that returns "
                       f"the model")
    return factory


def _float(model: object, attr: str, where: str) -> float:
    try:
        return float(getattr(model, attr))
    except (TypeError, ValueError, RuntimeError):
        raise S4SError(f"{where}.{attr} is not a number") from None


def model_info(model: object, name: str) -> ModelInfo:
    """The ModelInfo a k-diffusion-style wrapper describes with its attributes (module docstring)."""
    from ..denoiser import ModelInfo

    where = type(model).__name__
    missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(model, a)]
    if missing:
        raise S4SError(f"the k-diffusion-style model {where} lacks attribute(s) {', '.join(missing)}; give it "
                       f"shape=(C, H, W), sigma_min and sigma_max (see s4s_export/families/pyfactory.py)")
    shape = model.shape
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)):
        raise S4SError(f"{where}.shape is {shape!r}; it must be (C, H, W), three positive ints")
    sigma_min, sigma_max = _float(model, "sigma_min", where), _float(model, "sigma_max", where)
    if not 0 < sigma_min < sigma_max < float("inf"):
        raise S4SError(f"{where} has sigma range [{sigma_min}, {sigma_max}]; need 0 < sigma_min < sigma_max < inf")
    num_classes = getattr(model, "num_classes", 0) or 0
    if not isinstance(num_classes, int) or num_classes < 0:
        raise S4SError(f"{where}.num_classes is {num_classes!r}; it must be a non-negative int")
    sigma_data = _float(model, "sigma_data", where) if hasattr(model, "sigma_data") else 0.5
    return ModelInfo(name, tuple(shape), sigma_min, sigma_max, "class" if num_classes else "none", num_classes,
                     sigma_data, f"k-diffusion-style {where} from python:{name.removeprefix('python:')}")


def _kdiffusion_denoiser_class() -> type:
    from ..denoiser import Denoiser

    class KDiffusionDenoiser(Denoiser):
        """A k-diffusion-style `model(x, sigma[B], cond=labels)` as a Denoiser (same convention, no rescaling)."""

        def __init__(self, model: Callable[..., torch.Tensor], info: ModelInfo) -> None:
            super().__init__()
            self.model = model  # an nn.Module is registered as a submodule
            self.info = info

        def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
            import torch

            s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
            out = self.model(x, s) if cond is None else self.model(x, s, cond=cond)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise S4SError(f"{self.info.name} returned {got} for input {tuple(x.shape)}; a k-diffusion-style model "
                               f"returns the denoised x0 estimate, shaped like x")
            return out.to(x.dtype)

    return KDiffusionDenoiser


def as_denoiser(obj: object, name: str) -> Denoiser:
    """A Denoiser as it is, or a k-diffusion-style callable wrapped into one."""
    from ..denoiser import Denoiser

    if isinstance(obj, Denoiser):
        return obj
    if not callable(obj):
        raise S4SError(f"{name} returned a {type(obj).__name__}; the factory must return a Denoiser or a "
                       f"k-diffusion-style model(x, sigma, **extra)")
    return _kdiffusion_denoiser_class()(obj, model_info(obj, name))


def load_python(ref: ModelReference) -> Denoiser:
    """Import the module, call the factory, and return its model as a Denoiser (eval mode, no gradients)."""
    for what, given in (("--checkpoint", ref.checkpoint), ("--random-weights", ref.random_weights),
                        ("--config", ref.config)):
        if given:
            raise S4SError(f"{what} does not apply to python:{ref.target}; the factory builds the model and "
                           f"loads its own weights")
    factory = _factory(ref.target)
    name = f"python:{ref.target}"
    try:
        obj = factory()
    except S4SError:
        raise
    except Exception as e:  # noqa: BLE001 (the user's factory failed)
        raise S4SError(f"{name}() failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                       f"fix the factory") from None
    return as_denoiser(obj, name).eval().requires_grad_(False)


def check_python(ref: ModelReference) -> ModelSpec:
    """The ModelSpec of a python: reference. Building it runs the factory once; `load` returns that model."""
    from ..models import ModelSpec

    denoiser = load_python(ref)
    info = denoiser.info
    return ModelSpec(f"python:{ref.target}", info.description or f"python:{ref.target}",
                     "x".join(map(str, info.shape)), info.conditioning, lambda **_: denoiser, lambda: True)
