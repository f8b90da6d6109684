"""Teachers: what a few-step solver is measured and trained against.

Importing this module does not import torch (the CLI checks its arguments before loading torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .errors import S4SError
from .progress import progress

if TYPE_CHECKING:
    import torch

    from .denoiser import Denoiser


@dataclass(frozen=True)
class TeacherSpec:
    """A many-step classical solver, or `reference` (adaptive float64 ODE solve; exact models)."""

    solver: str = "unipc3"
    nfe: int = 20
    schedule: str = "logsnr"

    @property
    def is_reference(self) -> bool:
        return self.solver == "reference"

    def to_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return "reference ODE solution" if self.is_reference else f"{self.solver} NFE {self.nfe} ({self.schedule})"

    @classmethod
    def parse(cls, text: str) -> "TeacherSpec":
        """`reference` or `solver:nfe[:schedule]`, e.g. `unipc3:20:logsnr`, `heun:35:edm`."""
        if text == "reference":
            return cls("reference", 0, "")
        parts = text.split(":")
        try:
            return cls(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "logsnr")
        except (IndexError, ValueError):
            raise S4SError(f"bad teacher {text!r}; use 'reference' or SOLVER:NFE[:SCHEDULE], e.g. "
                           "unipc3:20:logsnr") from None


DEFAULT_NET_TEACHER = TeacherSpec("unipc3", 20, "logsnr")  # the LD3/GAS protocol (docs/learning.md)
REFERENCE_TEACHER = TeacherSpec("reference", 0, "")


def run_teacher(denoiser: Denoiser, teacher: TeacherSpec, noise: torch.Tensor, cond: torch.Tensor | None = None,
                batch: int = 64, desc: str = "teacher") -> torch.Tensor:
    """Teacher outputs for `noise` (float32 for networks, float64 for the reference solution)."""
    import torch

    from .gmm import reference_solution
    from .sampler import Sampler
    from .solvers import make_solver

    info = denoiser.info
    if teacher.is_reference:
        def run(x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
            return reference_solution(denoiser, x.double(), info.sigma_max, info.sigma_min, c)
    else:
        run = Sampler(denoiser, make_solver(teacher.solver, teacher.nfe, teacher.schedule, info.sigma_min,
                                            info.sigma_max))
    outs = []
    with torch.no_grad():
        for i in progress(range(0, noise.shape[0], batch), desc):
            outs.append(run(noise[i : i + batch], None if cond is None else cond[i : i + batch]))
    return torch.cat(outs)
