"""The sampler module: the only implementation of the sampling loop in the project.

`Sampler(denoiser, solver)` runs the N evaluations of any solver table in an unrolled Python
loop (method §3). Learning backpropagates through it (the table and sigmas may come from
learnable parameters), and the exporter traces it (the loop unrolls at trace time and the
table becomes graph constants).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .denoiser import Denoiser
from .errors import S4SError
from .solvers import SolverTable


class FixedSolver(nn.Module):
    """A solver table held as constant buffers; `forward()` returns (table, eval_sigmas, sigma_start).

    Buffers start in float64 (the table's precision); `.float()` on the sampler makes them float32.
    `sigma_start` is the table's noise scale (VE tables: sigmas[0]); `space` is the table's model space.
    """

    def __init__(self, solver: SolverTable, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.solver = solver
        self.space = solver.space
        self.register_buffer("table", torch.tensor(solver.table, dtype=dtype))
        self.register_buffer("eval_sigmas", torch.tensor(solver.eval_sigmas, dtype=dtype))
        self.register_buffer("sigma_start", torch.tensor(solver.noise_scale, dtype=dtype))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.table, self.eval_sigmas, self.sigma_start


def combine(row: torch.Tensor, x_start: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """row[0] * x_T + sum_j row[j+1] * D_j."""
    x = row[0] * x_start
    for j, d in enumerate(outputs):
        x = x + row[j + 1] * d
    return x


class Sampler(nn.Module):
    """noise [B,C,H,W] (unit variance) -> sample at sigma_end, in the solver's N denoiser calls.

    `solver` is a `SolverTable` (held as `FixedSolver` buffers) or any module whose `forward()`
    returns (table [N+1,N+1], eval_sigmas [N], sigma_start []) — e.g. learnable parameters; its
    `space` attribute (default "ve") is the model space of the table's rows (docs/solvers.md):
    VE rows are the denoiser's x, other rows the input `denoiser.forward_scaled` takes.
    Solver arithmetic runs in the noise's dtype (float32, or float64 for checks); the
    denoiser decides its own internal precision. With `checkpointing=True` each evaluation is
    recomputed in the backward pass (memory near one activation set per evaluation).
    """

    def __init__(self, denoiser: Denoiser, solver: SolverTable | nn.Module, checkpointing: bool = False):
        super().__init__()
        self.denoiser = denoiser
        self.solver = FixedSolver(solver) if isinstance(solver, SolverTable) else solver
        self.checkpointing = checkpointing

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: object) -> torch.Tensor:
        denoise = self.denoiser if getattr(self.solver, "space", "ve") == "ve" else self.denoiser.forward_scaled
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(denoise, x, sigma, cond, use_reentrant=False)
        return denoise(x, sigma, cond)

    def forward(self, noise: torch.Tensor, cond: object = None) -> torch.Tensor:
        info = self.denoiser.info
        if tuple(noise.shape[1:]) != tuple(info.shape):  # Python ints: static under tracing except the batch
            raise S4SError(f"noise must have shape [B, {', '.join(map(str, info.shape))}] for model {info.name!r}, "
                           f"got {list(noise.shape)}")
        space = getattr(self.solver, "space", "ve")
        if space not in ("ve", info.space):
            raise S4SError(f"the solver table is in model space {space!r} but model {info.name!r} is in "
                           f"{info.space!r}; make the table for this model's space (or in 've')")
        table, eval_sigmas, sigma_start = self.solver()
        table, eval_sigmas = table.to(noise.dtype), eval_sigmas.to(noise.dtype)
        x_start = noise * sigma_start.to(noise.dtype)
        outputs: list[torch.Tensor] = []
        for m in range(eval_sigmas.shape[0]):
            x = combine(table[m], x_start, outputs)
            sigma = eval_sigmas[m].expand(noise.shape[0])
            outputs.append(self._denoise(x, sigma, cond).to(noise.dtype))
        return combine(table[-1], x_start, outputs)
