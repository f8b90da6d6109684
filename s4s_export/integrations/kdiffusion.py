"""`sample_s4s`: any solver table as a k-diffusion sampler (the signature ComfyUI's KSampler calls).

k-diffusion samplers take `model(x, sigma [B], **extra_args) -> denoised` (a VE denoiser, x = x0 +
sigma * eps) and the start state `x = sigmas[0] * noise`. `sample_s4s` wraps that model as a
`Denoiser` and runs `Sampler` on it, so the table is interpreted by the one sampling loop in
s4s_export/sampler.py (docs/solvers.md, "k-diffusion and ComfyUI").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..denoiser import Denoiser, ModelInfo, sigma_batch
from ..errors import S4SError
from ..sampler import Sampler
from ..schedules import space_scale
from ..solverfile import SolverFile, load_solver_file
from ..solvers import SolverTable

SolverLike = SolverTable | SolverFile | str | Path


def resolve_solver(solver: SolverLike) -> SolverTable:
    """A solver table from a table, a loaded solver file or a solver-file path."""
    if isinstance(solver, SolverTable):
        return solver
    if isinstance(solver, SolverFile):
        return solver.solver
    if isinstance(solver, (str, Path)):
        return load_solver_file(solver).solver
    raise S4SError(f"solver must be a SolverTable, a SolverFile or a solver-file path, got {type(solver).__name__}")


class KDiffusionDenoiser(Denoiser):
    """A k-diffusion denoiser `model(x, sigma, **extra_args)` as D(x, sigma); reports each call to `callback`.

    The callback gets k-diffusion's dict: x (the evaluation point), i (the evaluation index), sigma and
    sigma_hat (its sigma, a 0-dim tensor; the table has no churn, so they are equal) and denoised.
    For a table in a model space (docs/solvers.md) `forward_scaled` turns the table's state back into x.
    """

    def __init__(self, model: Callable[..., torch.Tensor], shape: tuple[int, ...], solver: SolverTable,
                 extra_args: dict | None = None, callback: Callable[[dict], Any] | None = None):
        super().__init__()
        self.model = model
        self.extra_args = extra_args or {}
        self.callback = callback
        self.calls = 0
        self.info = ModelInfo("k-diffusion", tuple(shape), float(np.min(solver.eval_sigmas)), solver.sigma_start,
                              space=solver.space)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        denoised = self.model(x, sigma, **self.extra_args)
        if self.callback is not None:
            s = sigma[0]
            self.callback({"x": x, "i": self.calls, "sigma": s, "sigma_hat": s, "denoised": denoised})
        self.calls += 1
        return denoised

    def forward_scaled(self, x_in: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self(x_in / space_scale(self.info.space, sigma_batch(sigma, x_in)), sigma, cond)


def check_sigmas(sigmas: torch.Tensor | np.ndarray | list, solver: SolverTable) -> None:
    """The caller's sigmas must be the solver's own grid: a learned table is tied to its sigmas."""
    given = np.asarray(sigmas.detach().cpu() if isinstance(sigmas, torch.Tensor) else sigmas, dtype=np.float64)
    own = solver.sigmas
    if given.shape != own.shape or not np.allclose(given, own, rtol=1e-5, atol=0):
        raise S4SError(f"sigmas {np.round(given, 4).tolist()} are not this solver's grid {np.round(own, 4).tolist()} "
                       f"(NFE {solver.nfe}); pass sigmas=None or the solver's sigmas (s4s_sigmas(solver))")


def s4s_sigmas(solver: SolverLike, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The solver's step grid as k-diffusion's `sigmas` (what a ComfyUI SIGMAS input would carry)."""
    return torch.tensor(resolve_solver(solver).sigmas, device=device, dtype=dtype)


@torch.no_grad()
def sample_s4s(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor | None = None,
               extra_args: dict | None = None, callback: Callable[[dict], Any] | None = None,
               disable: bool | None = None, solver: SolverLike | None = None) -> torch.Tensor:
    """Sample with a solver table, k-diffusion style: `x` is the start state sigmas[0] * noise.

    `sigmas` may be None (the solver's grid is used) or must equal the solver's grid. `disable`
    (k-diffusion's progress-bar switch) is accepted for the signature; there is no bar to disable.
    Returns the sample x = x0 + sigma * eps at the solver's last sigma (x0 itself for a grid ending at 0),
    in x's dtype.
    """
    del disable
    if solver is None:
        raise S4SError("sample_s4s needs solver=: a solver file path, a SolverFile or a SolverTable")
    table = resolve_solver(solver)
    if sigmas is not None:
        check_sigmas(sigmas, table)
    if not np.isfinite(table.sigma_start):
        raise S4SError("this solver starts at sigma = inf (a flow-matching table); k-diffusion's x = sigmas[0] * noise "
                       "needs a finite start: use the diffusers scheduler (S4SScheduler) for flow models")
    wrapper = KDiffusionDenoiser(model, tuple(x.shape[1:]), table, extra_args, callback)
    sampler = Sampler(wrapper, table).to(x.device)
    # The table's start state is c(sigma_0) * x (x itself for VE tables), in units of its noise scale.
    out = sampler(x * (space_scale(table.space, table.sigma_start) / table.noise_scale))
    return out if table.space == "ve" else out / space_scale(table.space, table.sigma_end)
