"""A model family as a diffusers pipeline sees it: timesteps, latent space, network output -> D.

Built from the model's own scheduler config with the adapters of s4s_export/families/: the
pipeline's network output reaches the adapter through `PipelineNet`, so D and the timesteps come
from the very code `Sampler` runs on the same model (docs/solvers.md, "diffusers scheduler").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..denoiser import Denoiser, ModelInfo
from ..errors import S4SError
from ..schedules import space_scale
from ..solvers import SolverTable


class PipelineNet(nn.Module):
    """The network as the adapter calls it: returns `output`, the one the pipeline computed (guidance
    applied), or zeros when probed for the timesteps; it keeps the last `t` it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.output: torch.Tensor | None = None
        self.last_t: torch.Tensor | None = None

    def forward(self, x_in: torch.Tensor, t: torch.Tensor, cond: object = None) -> torch.Tensor:
        self.last_t = t
        return torch.zeros_like(x_in) if self.output is None else self.output


@dataclass(eq=False)
class Family:
    """The pipeline's view of a model: its space ("vp", "flow"), its adapter and its sigma range."""

    space: str
    adapter: Denoiser  # built on a PipelineNet
    sigma_range: tuple[float, float]

    def timesteps(self, eval_sigmas: np.ndarray) -> torch.Tensor:
        """The timesteps the adapter passes to the network at these sigmas (float32, as `Sampler` in float32)."""
        sigma = torch.tensor(eval_sigmas, dtype=torch.float32)
        self.adapter.to("cpu").net.output = None
        self.adapter.forward_scaled(torch.zeros(sigma.shape[0], 1), sigma, None)
        return self.adapter.net.last_t.reshape(-1).clone()

    def denoised(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D from the pipeline's network output at the model-space state `sample`."""
        self.adapter.to(sample.device).net.output = model_output
        try:
            return self.adapter.forward_scaled(sample, sigma.expand(sample.shape[0]), None)
        finally:
            self.adapter.net.output = None

    def noised(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The model-space state c(sigma) (x0 + sigma noise), finite at sigma = inf."""
        c = space_scale(self.space, sigma)
        return c * x0 + torch.where(torch.isinf(sigma), torch.ones_like(sigma), c * sigma) * noise

    def pipeline_table(self, table: SolverTable) -> tuple[np.ndarray, float]:
        """The table's rows over [z, D_0, ...] with the network inputs in this family's space, and z's noise scale.

        A table in this space is used as it is. A VE table (x_m over [x_T, D_0, ...]) is rescaled as
        s4s_export/solvers.py `trace_table_in_space` does: rows 0..N-1 by c(sigma_m), column 0 by
        1 / c(sigma_0), so z = c(sigma_0) x_T; its last row stays x at sigma_end, which is what `Sampler`
        returns for a VE table.
        """
        if table.space == self.space:
            return table.table, table.noise_scale
        if table.space != "ve":
            raise S4SError(f"the solver table is in model space {table.space!r}, this pipeline's model in "
                           f"{self.space!r}: it was made for another model; make or learn one for this model")
        c = np.array([float(space_scale(self.space, s)) for s in table.eval_sigmas] + [1.0])
        rows = table.table * c[:, None]
        c0 = float(space_scale(self.space, table.sigma_start))
        rows[:, 0] /= c0
        return rows, c0 * table.sigma_start

    def check_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> None:
        if model_output.shape != sample.shape:
            raise S4SError(f"the network output has shape {list(model_output.shape)}, the latents "
                           f"{list(sample.shape)}: S4SScheduler serves networks that predict epsilon, v, x0 or a "
                           "velocity of the latents' shape (not a learned variance); use the model's own scheduler")

    def check_sigmas(self, table: SolverTable, model_name: str | None) -> None:
        """A table evaluating outside the model's sigma range was learned for another model."""
        lo, hi = self.sigma_range
        ev = table.eval_sigmas
        if np.any(ev < lo * (1 - 1e-4)) or np.any(ev > hi * (1 + 1e-4)):
            raise S4SError(f"this solver (learned for {model_name or 'another model'!r}) evaluates at sigmas "
                           f"{ev.min():.4g}..{ev.max():.4g}, outside this model's range {lo:.4g}..{hi:.4g}: it was "
                           "learned for another model; learn one for this model with `s4s-export learn`")


def family_from_scheduler_config(config: dict) -> Family:
    """FlowMatch* configs: flow (velocity); every other config: VP with its prediction_type.

    A config without `_class_name` (an in-memory `scheduler.config`) is a FlowMatch one when it has a
    `shift` and no betas.
    """
    name = str(config.get("_class_name", ""))
    betas = any(k in config for k in ("beta_schedule", "beta_start", "trained_betas"))
    if name.startswith("FlowMatch") or (not name and "shift" in config and not betas):
        from ..families.flow import FlowDenoiser, flow_sigma_range

        lo, hi = flow_sigma_range(config)
        info = ModelInfo("diffusers-pipeline", (1, 1, 1), lo, hi, space="flow")
        return Family("flow", FlowDenoiser(PipelineNet(), info, int(config.get("num_train_timesteps", 1000))), (lo, hi))
    from ..families.vp import PREDICTIONS, VPDenoiser, VPSchedule

    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise S4SError(f"scheduler config {name or '(no class)'} has prediction_type {prediction!r}; S4SScheduler "
                       f"serves VP models predicting {', '.join(PREDICTIONS)} and flow-matching models: use the "
                       "model's own scheduler")
    schedule = VPSchedule.from_config(config)
    info = ModelInfo("diffusers-pipeline", (1, 1, 1), schedule.sigma_min, schedule.sigma_max, space="vp")
    return Family("vp", VPDenoiser(PipelineNet(), schedule, prediction, info), (schedule.sigma_min, schedule.sigma_max))
