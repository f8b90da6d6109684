"""Distances between a student's output and the teacher's, per sample (docs/learning.md).

- `pseudo-huber`: sqrt(||a - b||^2 + c^2) - c with c = 0.00054 * sqrt(dim) (improved consistency training);
- `l2`: mean squared error over the sample's entries; `l1`: mean absolute error;
- `lpips`: AlexNet LPIPS v0.1 (`s4s_export/lpips.py`), only where its weights are installed;
- `auto`: lpips where available for 1- or 3-channel images, else pseudo-huber.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import choice_error

DISTANCES = ("auto", "pseudo-huber", "l2", "l1", "lpips")
PSEUDO_HUBER_C = 0.00054


@dataclass
class Distance:
    """A per-sample distance: `fn(a [B,...], b [B,...]) -> [B]`, with what ran recorded in `info`."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    info: dict = field(default_factory=dict)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fn(a, b)


def pseudo_huber(dim: int) -> Distance:
    c = PSEUDO_HUBER_C * math.sqrt(dim)

    def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = (a - b).flatten(1).pow(2).sum(1)
        return torch.sqrt(sq + c * c) - c

    return Distance("pseudo-huber", fn, {"name": "pseudo-huber", "c": c, "formula": "sqrt(||a-b||^2 + c^2) - c"})


def make_distance(name: str, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Distance:
    """The distance `name` for samples of `shape` (C, H, W); `auto` resolves here and says what it chose."""
    if name not in DISTANCES:
        raise choice_error("distance", name, DISTANCES)
    dim = math.prod(shape)
    if name == "auto":
        from ..lpips import lpips_available

        name = "lpips" if lpips_available() and len(shape) == 3 and shape[0] in (1, 3) else "pseudo-huber"
    if name == "pseudo-huber":
        return pseudo_huber(dim)
    if name == "l2":
        return Distance("l2", lambda a, b: (a - b).flatten(1).pow(2).mean(1),
                        {"name": "l2", "formula": "mean((a-b)^2)"})
    if name == "l1":
        return Distance("l1", lambda a, b: (a - b).flatten(1).abs().mean(1), {"name": "l1", "formula": "mean(|a-b|)"})
    from ..lpips import LPIPS

    net = LPIPS.from_installed().to(device)
    return Distance("lpips", net, {"name": "lpips", **net.info})
