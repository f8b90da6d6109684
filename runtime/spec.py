"""A loaded graph as the runtime sees it: its tensors, batch range and description, checked against the
graph contract (s4s_export/contract.py: input and output names, description keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract import ALL_INPUTS, GUIDANCE, IMAGES, LABELS, LATENTS, NOISE, PROMPT_EMBEDS, recorded_num_classes
from ..errors import S4SError


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output; `None` in `shape` marks the dynamic batch dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ",".join("B" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


@dataclass
class GraphSpec:
    """Inputs, output and batch range `(min, max)` of a loaded graph (max None: unbounded)."""

    inputs: dict[str, TensorSpec]
    output: TensorSpec
    batch_range: tuple[int, int | None]
    info: dict = field(default_factory=dict)

    @property
    def noise(self) -> TensorSpec:
        return self.inputs[NOISE]

    @property
    def conditional(self) -> bool:
        """Class-conditional: takes class_labels."""
        return LABELS in self.inputs

    @property
    def text(self) -> bool:
        """Text-conditioned: takes prompt embeddings (contract.TEXT_INPUTS)."""
        return PROMPT_EMBEDS in self.inputs

    def limit_batch(self, max_batch: int) -> None:
        """Cap the largest batch per run at `max_batch`, never below the minimum (a fixed batch stays as it is)."""
        lo, hi = self.batch_range
        self.batch_range = (lo, max(lo, max_batch if hi is None else min(hi, max_batch)))

    @property
    def num_classes(self) -> int | None:
        """Number of classes of a conditional model (label == num_classes is the null label), if recorded."""
        return recorded_num_classes(self.info)


def check_graph(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], info: dict) -> GraphSpec:
    """Check a graph against the serving contract and return its spec; S4SError names what differs.

    The batch range is the fixed batch, or (1, None) for a dynamic batch (backends may narrow it).
    """
    where = f"{path} is not an s4s-export sampler graph"
    names = {t.name: t for t in inputs}
    unknown = sorted(set(names) - set(ALL_INPUTS))
    if NOISE not in names or unknown:
        raise S4SError(f"{where}: inputs {', '.join(t.describe() for t in inputs)}; expected {NOISE} [B,C,H,W]"
                       f" (and {LABELS} or {PROMPT_EMBEDS}..., {GUIDANCE} for conditional models); re-export it with "
                       f"`s4s-export build`")
    noise = names[NOISE]
    if len(noise.shape) != 4 or any(d is None for d in noise.shape[1:]):
        raise S4SError(f"{where}: {noise.describe()} should be [B,C,H,W] with fixed C, H, W")
    if noise.dtype.kind != "f":
        raise S4SError(f"{where}: {noise.describe()} should be floating point (float32); re-export it with "
                       "`s4s-export build`")
    if LABELS in names and names[LABELS].dtype.kind not in "iu":
        raise S4SError(f"{where}: {names[LABELS].describe()} should be integer (int64); re-export it with "
                       "`s4s-export build`")
    if GUIDANCE in names and LABELS not in names and PROMPT_EMBEDS not in names:
        raise S4SError(f"{where}: it takes {GUIDANCE} but no {LABELS} or {PROMPT_EMBEDS}")
    if len(outputs) != 1 or len(outputs[0].shape) != 4 or outputs[0].name not in (IMAGES, LATENTS):
        raise S4SError(f"{where}: outputs {', '.join(t.describe() for t in outputs)}; expected one {IMAGES} [B,...] "
                       f"(or {LATENTS} [B,C,H,W] for a graph built with --no-decode)")
    batch = noise.shape[0]
    return GraphSpec(names, outputs[0], (1, None) if batch is None else (batch, batch), info)
