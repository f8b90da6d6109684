"""The solver table that replays a diffusers scheduler's run: its sigmas and its initial noise scaling.

After `scheduler.set_timesteps(n)` the scheduler's `sigmas` (ending with the final 0) are the grid:
VP schedulers hold VE sigmas; FlowMatch schedulers hold t, mapped to sigma = t / (1 - t) (inf at t = 1).
The start state in model space is z = start_scale * noise for the pipeline's unit-variance latents:
  Euler-type (state x = x0 + sigma eps, latents * init_noise_sigma):
                                                                    start_scale = init_noise_sigma / sqrt(1 + sigma_0^2)
  DPM-Solver and other VP-state schedulers (init_noise_sigma = 1):  start_scale = init_noise_sigma
  FlowMatch (x_t at t = 1 is the noise):                            start_scale = 1
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import S4SError
from ..solvers import SolverTable, make_solver
from .flow import t_to_sigma

VE_STATE_SCHEDULERS = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler")
VP_STATE_SCHEDULERS = ("DPMSolverMultistepScheduler",)


def solver_for_scheduler(scheduler: Any, solver: str) -> SolverTable:
    """Our `solver` table on the grid of a diffusers scheduler after `set_timesteps` (model space vp or flow)."""
    kind = type(scheduler).__name__
    grid = np.asarray(scheduler.sigmas.double().cpu().numpy(), dtype=np.float64)
    init = float(getattr(scheduler, "init_noise_sigma", 1.0))  # FlowMatch schedulers have none: 1
    if kind.startswith("FlowMatch"):
        sigmas, space, start = t_to_sigma(grid), "flow", init
    elif kind in VE_STATE_SCHEDULERS:
        sigmas, space, start = grid, "vp", init / float(np.sqrt(1 + grid[0] ** 2))
    elif kind in VP_STATE_SCHEDULERS:
        sigmas, space, start = grid, "vp", init
    else:
        raise S4SError(f"no grid mapping for scheduler {kind}; supported: FlowMatch*, "
                       f"{', '.join(VE_STATE_SCHEDULERS + VP_STATE_SCHEDULERS)}")
    steps = sigmas.size - 1
    return make_solver(solver, steps, sigmas.tolist(), float(sigmas[-2]), float(sigmas[0]), space, start)
