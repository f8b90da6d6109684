"""The relaxed objective's per-sample noise (method §4.2, LD3).

Each training sample i may start from z'_i with ||z'_i - z_i|| <= rho, rho = c_r * m^(-5/2) * sqrt(dim).
After each parameter step, z' takes a projected gradient step of length `step_i` (a fraction of
rho to start with, our choice: the gradient's scale depends on the distance, its direction does
not); the move is kept only if that sample's loss went down, and a rejected sample's step halves.
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
    """z' for every training sample, with per-sample step lengths. Everything stays on the CPU."""

    def __init__(self, z: torch.Tensor, radius: float, step_fraction: float = 0.5):
        self.center = z
        self.radius = radius
        self.z = z.clone()
        self.step = torch.full((z.shape[0],), step_fraction * radius, dtype=torch.float64)
        self.accepted = 0
        self.proposed = 0

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        return self.z[idx].clone()

    def propose(self, idx: torch.Tensor, z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """A normalised descent step from z (= z'[idx]) along -grad, projected onto the ball."""
        g = grad.to(self.z.dtype)
        norm = g.flatten(1).norm(dim=1).clamp_min(1e-30)
        step = (self.step[idx] / norm).to(g.dtype).reshape(-1, *([1] * (g.ndim - 1)))
        return project(z - step * g, self.center[idx], self.radius)

    def accept(self, idx: torch.Tensor, candidate: torch.Tensor, new_loss: torch.Tensor, old_loss: torch.Tensor) -> None:
        """Keep candidate[k] where its loss is lower (NaN never is); halve the step elsewhere."""
        better = (new_loss < old_loss).cpu()
        self.z[idx[better]] = candidate[better].to(self.z.dtype)
        self.step[idx[~better]] *= 0.5
        self.accepted += int(better.sum())
        self.proposed += int(better.numel())

    def state_dict(self) -> dict:
        return {"z": self.z, "step": self.step, "accepted": self.accepted, "proposed": self.proposed}

    def load_state_dict(self, state: dict) -> None:
        self.z, self.step = state["z"].clone(), state["step"].clone()
        self.accepted, self.proposed = int(state["accepted"]), int(state["proposed"])
