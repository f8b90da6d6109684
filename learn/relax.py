"""The relaxed objective's per-sample noise (docs/learning.md; LD3).

Each training sample i may start from z'_i with ||z'_i - z_i|| <= rho, rho = c_r * m^(-5/2) * sqrt(dim).
After each parameter step, z' takes a projected gradient step of length `step_i` (a fraction of
rho to start with, our choice: the gradient's scale depends on the distance, its direction does
not). The move is kept only if that sample's loss went down; a rejected sample returns to its
last accepted point and its step halves.

The check is lazy, to cost no extra denoiser calls: a moved sample's loss is measured by the
forward pass of its next visit (which runs anyway), and compared with the loss of its last
accepted point. (The two losses are measured under the parameters of their own visits.)
"""

from __future__ import annotations

import math

import torch


def relaxation_radius(num_coefficients: int, dim: int, c_r: float = 1.0) -> float:
    """rho = c_r * m^(-5/2) * sqrt(dim)."""
    return c_r * num_coefficients ** -2.5 * math.sqrt(dim)


def project(z: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """Per-sample projection of z onto the ball of `radius` around `center`."""
    d = z - center
    norm = d.flatten(1).norm(dim=1).clamp_min(1e-30)
    scale = (radius / norm).clamp(max=1.0).reshape(-1, *([1] * (z.ndim - 1)))
    return center + d * scale


class RelaxedNoise:
    """z' for every training sample: current point, last accepted point, its loss, step length. On the CPU."""

    def __init__(self, z: torch.Tensor, radius: float, step_fraction: float = 0.5):
        n = z.shape[0]
        self.center = z
        self.radius = radius
        self.z = z.clone()
        self.anchor = z.clone()
        self.loss = torch.full((n,), math.inf, dtype=torch.float64)
        self.pending = torch.zeros(n, dtype=torch.bool)
        self.step = torch.full((n,), step_fraction * radius, dtype=torch.float64)
        self.accepted = 0
        self.proposed = 0

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        return self.z[idx].clone()

    def settle(self, idx: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Judge the points just evaluated (loss [B] at get(idx)); returns the mask of those kept."""
        loss = loss.detach().double().cpu()
        keep = loss < self.loss[idx]  # NaN is never better
        kept, dropped = idx[keep], idx[~keep]
        self.anchor[kept] = self.z[kept]
        self.loss[kept] = loss[keep]
        self.z[dropped] = self.anchor[dropped]
        self.step[dropped[self.pending[dropped]]] *= 0.5
        self.accepted += int(self.pending[kept].sum())
        self.proposed += int(self.pending[idx].sum())
        self.pending[idx] = False
        return keep

    def move(self, idx: torch.Tensor, grad: torch.Tensor) -> None:
        """A normalised descent step along -grad from the current points, projected onto the ball."""
        g = grad.detach().cpu().to(self.z.dtype)
        norm = g.flatten(1).norm(dim=1).clamp_min(1e-30)
        step = (self.step[idx] / norm).to(g.dtype).reshape(-1, *([1] * (g.ndim - 1)))
        self.z[idx] = project(self.z[idx] - step * g, self.center[idx], self.radius)
        self.pending[idx] = True

    def state_dict(self) -> dict:
        return {"z": self.z, "anchor": self.anchor, "loss": self.loss, "pending": self.pending, "step": self.step,
                "accepted": self.accepted, "proposed": self.proposed}

    def load_state_dict(self, state: dict) -> None:
        for key in ("z", "anchor", "loss", "pending", "step"):
            setattr(self, key, state[key].clone())
        self.accepted, self.proposed = int(state["accepted"]), int(state["proposed"])
