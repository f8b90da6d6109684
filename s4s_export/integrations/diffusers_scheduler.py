"""`S4SScheduler`: a solver table as a diffusers scheduler (SchedulerMixin + ConfigMixin).

The pipeline keeps its loop, its network call and its guidance; the scheduler turns each
network output into D_m with the model family's adapter (s4s_export/families/) and returns
the next model-space state `combine(table[m + 1], x_start, [D_0..D_m])` from s4s_export/sampler.py,
the same arithmetic `Sampler` runs (docs/solvers.md, "diffusers scheduler").

The scheduler config holds the whole table, the sigmas, the model's own scheduler config and
the solver file's provenance, so `save_pretrained` / `from_pretrained` round-trip it exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import S4SError
from ..sampler import combine
from ..solverfile import SolverFile, check_model, load_solver_file
from ..solvers import SolverTable

try:
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
    from diffusers.utils import BaseOutput
except ModuleNotFoundError as e:  # the diffusers extra
    raise S4SError(f"S4SScheduler needs diffusers ({e.name} is not installed): pip install "
                   "'s4s-export[diffusers]'") from None

from .family import Family, family_from_scheduler_config


@dataclass
class S4SSchedulerOutput(BaseOutput):
    """prev_sample: the next state in the pipeline's latent space; pred_original_sample: D_m."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class S4SScheduler(SchedulerMixin, ConfigMixin):
    """A fixed-NFE solver table driving a diffusers pipeline; `num_inference_steps` must equal its NFE.

    Build it with `from_solver_file(path, pipe.scheduler)` or `from_pretrained(folder)`.
    `solver` is `SolverTable.to_dict()`, `model_scheduler` the model's own scheduler config (it fixes
    the timestep mapping, the prediction type and the latent space), `provenance` the solver file's
    record (method, model identity, validation).
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, solver: dict | None = None, model_scheduler: dict | None = None, provenance: dict | None = None):
        if solver is None or model_scheduler is None:
            raise S4SError("S4SScheduler needs a solver table and the model's scheduler config: build it with "
                           "S4SScheduler.from_solver_file(path, pipe.scheduler) or from_pretrained(folder)")
        try:
            self.table = SolverTable.from_dict(solver)
        except (KeyError, TypeError, ValueError) as e:
            raise S4SError(f"scheduler config has a malformed solver table ({e}); re-create it with "
                           "`s4s-export export-scheduler`") from None
        self.family: Family = family_from_scheduler_config(model_scheduler)
        self.family.check_sigmas(self.table, (provenance or {}).get("model", {}).get("name"))
        self.rows, self.noise_scale = self.family.pipeline_table(self.table)
        self.num_inference_steps: int | None = None
        self.timesteps = self.family.timesteps(self.table.eval_sigmas)
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._x_start: torch.Tensor | None = None
        self._outputs: list[torch.Tensor] = []

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_solver_file(cls, path: str | Path | SolverFile, scheduler_config: Any, model: nn.Module | None = None
                         ) -> S4SScheduler:
        """From a solver file and the model's scheduler (`pipe.scheduler`, its config, a scheduler_config.json
        or a folder holding one). With `model` (the model's s4s Denoiser), refuse a solver learned for another
        model."""
        sf = path if isinstance(path, SolverFile) else load_solver_file(path)
        if model is not None:
            check_model(sf, model.identity_dict(), path if not isinstance(path, SolverFile) else "solver file")
        return cls(solver=sf.solver.to_dict(), model_scheduler=read_scheduler_config(scheduler_config),
                   provenance=json.loads(json.dumps(sf.info)))

    # --- the diffusers scheduler interface -------------------------------------------------

    @property
    def init_noise_sigma(self) -> float:
        """The pipeline multiplies unit noise by this: the start state the table expects, in latent space."""
        return float(self.rows[0, 0] * self.noise_scale)

    @property
    def step_index(self) -> int | None:
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        if begin_index != 0:
            raise S4SError(f"an S4S solver table runs from its first step; begin_index {begin_index} (img2img with "
                           "strength < 1) would skip it: use the table's full NFE")
        self._begin_index = begin_index

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None) -> torch.Tensor:
        """Identity: the state is kept in the network's own input space."""
        return sample

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: list[float] | None = None, sigmas: list[float] | None = None,
                      mu: float | None = None) -> None:
        """The table's timesteps; `num_inference_steps` must be its NFE. Custom `timesteps` / `sigmas` are
        refused (the table was learned for its own); `mu` (dynamic shifting) is ignored for the same reason."""
        del mu
        nfe = self.table.nfe
        if timesteps is not None or sigmas is not None:
            raise S4SError(f"S4SScheduler runs the solver's own {nfe} steps; do not pass custom timesteps or sigmas")
        if num_inference_steps != nfe:
            raise S4SError(f"this S4S solver was learned for exactly {nfe} steps (NFE {nfe}); call the pipeline with "
                           f"num_inference_steps={nfe}, not {num_inference_steps}")
        self.num_inference_steps = nfe
        self.timesteps = self.family.timesteps(self.table.eval_sigmas).to(device)
        self._step_index = None
        self._begin_index = None
        self._x_start = None
        self._outputs = []

    def index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        hits = (self.timesteps == torch.as_tensor(timestep, device=self.timesteps.device)).nonzero()
        if len(hits) == 0:
            raise S4SError(f"timestep {float(timestep)} is not one of this solver's timesteps "
                           f"{self.timesteps.tolist()}; call set_timesteps and step through scheduler.timesteps")
        return int(hits[0].item())

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor, sample: torch.Tensor,
             generator: torch.Generator | None = None, return_dict: bool = True, **kwargs: Any
             ) -> S4SSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """Evaluation m: D_m from the network output, then the next state combine(table[m + 1], x_start, D_0..D_m)."""
        del generator, kwargs  # a deterministic solver; pipelines pass eta/generator to every scheduler
        if self.num_inference_steps is None:
            raise S4SError("call set_timesteps(num_inference_steps) before step()")
        if self._step_index is None:
            self._step_index = self.index_for_timestep(timestep) if self._begin_index is None else self._begin_index
            if self._step_index != 0:
                raise S4SError("an S4S solver table runs from its first timestep; start at scheduler.timesteps[0]")
        m = self._step_index
        if m >= self.table.nfe:
            raise S4SError(f"step() called {m + 1} times for a {self.table.nfe}-step solver; call set_timesteps again")
        self.family.check_output(model_output, sample)
        # Half-precision latents are stepped in float32, as diffusers' own schedulers do.
        dtype = torch.float32 if sample.dtype in (torch.float16, torch.bfloat16) else sample.dtype
        x, out = sample.to(dtype), model_output.to(dtype)
        table = torch.as_tensor(self.rows, dtype=dtype, device=x.device)
        if m == 0:
            self._check_shape(x)
            self._x_start = x / table[0, 0]
            self._outputs = []
        sigma = torch.as_tensor(self.table.eval_sigmas[m], dtype=dtype, device=x.device)
        denoised = self.family.denoised(out, x, sigma).to(dtype)
        self._outputs.append(denoised)
        prev_sample = combine(table[m + 1], self._x_start, self._outputs).to(sample.dtype)
        self._step_index = m + 1
        if not return_dict:
            return prev_sample, denoised
        return S4SSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The model-space state at the given timesteps: c(sigma) * (x0 + sigma * noise)."""
        idx = [self.index_for_timestep(t) for t in torch.as_tensor(timesteps).reshape(-1)]
        sig = torch.as_tensor(self.table.eval_sigmas[idx], dtype=original_samples.dtype, device=original_samples.device)
        return self.family.noised(original_samples, noise, sig.reshape(-1, *[1] * (original_samples.ndim - 1)))

    def __len__(self) -> int:
        return self.table.nfe

    def _check_shape(self, sample: torch.Tensor) -> None:
        model = self.config.provenance.get("model", {}) if self.config.provenance else {}
        shape = model.get("shape")
        if shape and list(sample.shape[1:]) != list(shape):
            raise S4SError(f"this solver was learned for model {model.get('name')!r} with latents {list(shape)}, "
                           f"but the pipeline's latents are {list(sample.shape[1:])}; "
                           "learn a solver for this model and size")


def read_scheduler_config(config: Any) -> dict:
    """A scheduler config as a plain dict with its `_class_name`: from a scheduler (pipe.scheduler), a mapping
    (pipe.scheduler.config), a scheduler_config.json or a folder holding one."""
    if isinstance(config, (str, Path)):
        path = Path(config)
        for candidate in (path, path / "scheduler_config.json", path / "scheduler" / "scheduler_config.json"):
            if candidate.is_file():
                try:
                    return json.loads(candidate.read_text())
                except json.JSONDecodeError as e:
                    raise S4SError(f"{candidate} is not valid JSON ({e.msg}); pass the model's "
                                   "scheduler_config.json") from None
        raise S4SError(f"no scheduler config at {path}; pass the model's scheduler_config.json, its folder or "
                       "pipe.scheduler")
    name = None
    if isinstance(config, ConfigMixin):
        name, config = type(config).__name__, config.config
    try:
        doc = json.loads(json.dumps(dict(config)))
    except (TypeError, ValueError) as e:
        raise S4SError(f"the scheduler config must be a JSON-like mapping ({e}); pass pipe.scheduler") from None
    doc.pop("_use_default_values", None)
    if name is not None:
        doc["_class_name"] = name
    return doc
