"""The model reference kinds the families add to `--model`: `diffusers:PATH`, `compvis:PATH.ckpt`,
`python:MODULE:FACTORY`.

`modelref` registers `FAMILY_KINDS` as `RefKind`s when it is imported. Each check imports its family on
first use, so the registry imports neither torch nor diffusers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .pyfactory import ModelReference

if TYPE_CHECKING:
    from ..models import ModelSpec


def _check_diffusers(ref: ModelReference) -> ModelSpec:
    from .diffusers_folder import check_diffusers

    return check_diffusers(ref)


def _check_compvis(ref: ModelReference) -> ModelSpec:
    from .compvis import check_compvis

    return check_compvis(ref)


def _check_python(ref: ModelReference) -> ModelSpec:
    from .pyfactory import check_python

    return check_python(ref)


# kind -> (check, usage in --model help and errors, accepts --config)
FAMILY_KINDS: dict[str, tuple[Callable[[ModelReference], ModelSpec], str, bool]] = {
    "diffusers": (_check_diffusers, "diffusers:PATH (a save_pretrained folder)", False),
    "compvis": (_check_compvis, "compvis:PATH.ckpt --config PATH.yaml", True),
    "python": (_check_python, "python:MODULE:FACTORY", False),
}
