"""What a checkpoint records about its network: an EDM class name and constructor kwargs.

Torch-free to import (the CLI resolves models before it loads torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import S4SError

if TYPE_CHECKING:
    from .denoiser import Denoiser


@dataclass(frozen=True)
class NetworkSpec:
    """An EDM preconditioner class name and its constructor kwargs (what a pickle records)."""

    class_name: str
    init_kwargs: dict

    def build(self, name: str | None = None) -> Denoiser:
        """The network with fresh random weights from the global torch RNG."""
        from .networks import build_network
        from .networks.precond import PRECOND_TYPES

        if self.class_name not in PRECOND_TYPES:
            raise S4SError(f"checkpoint network is a {self.class_name}; expected one of: {', '.join(PRECOND_TYPES)}")
        try:
            return build_network(self.class_name, **self.init_kwargs, name=name)
        except TypeError as e:
            raise S4SError(f"cannot build {self.class_name} from the checkpoint's constructor arguments: {e}") from None

    def to_dict(self) -> dict:
        return {"class_name": self.class_name, "init_kwargs": self.init_kwargs}
