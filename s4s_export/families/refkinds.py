"""The model reference kinds the families add to `--model`: `diffusers:PATH`, `compvis:PATH.ckpt`, `python:MODULE:FACTORY`.

`modelref` imports this module once its own names exist; each check imports its family on first
use, so importing the registry imports neither torch nor diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..modelref import ModelRef, RefKind, register_ref_kind

if TYPE_CHECKING:
    from ..models import ModelSpec


def _check_diffusers(ref: ModelRef) -> ModelSpec:
    from .diffusers_folder import check_diffusers

    return check_diffusers(ref)


def _check_compvis(ref: ModelRef) -> ModelSpec:
    from .compvis import check_compvis

    return check_compvis(ref)


def _check_python(ref: ModelRef) -> ModelSpec:
    from .pyfactory import check_python

    return check_python(ref)


register_ref_kind("diffusers", RefKind(_check_diffusers, "diffusers:PATH (a save_pretrained folder)"))
register_ref_kind("compvis", RefKind(_check_compvis, "compvis:PATH.ckpt --config PATH.yaml", accepts_config=True))
register_ref_kind("python", RefKind(_check_python, "python:MODULE:FACTORY"))
