"""The serving contract of a baked sampler graph: its tensors, batch range and description.

Inputs: `noise` [B,C,H,W] float32, plus `class_labels` [B] int64 and `guidance_scale` [] float32
for class-conditional models. Output: `images`, float32 NCHW in [-1, 1] or uint8 NHWC.
Only the batch dimension may be dynamic. A JSON sidecar `<name>.json` next to the model file
(and, for ONNX, the model's metadata_props) describes the rest: NFE, solver, model, precision,
number of classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import S4SError

NOISE = "noise"
LABELS = "class_labels"
GUIDANCE = "guidance_scale"
IMAGES = "images"
INPUTS = (NOISE, LABELS, GUIDANCE)


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
        return LABELS in self.inputs

    def limit_batch(self, max_batch: int) -> None:
        """Cap the largest batch per run at `max_batch`, never below the minimum (a fixed batch stays as it is)."""
        lo, hi = self.batch_range
        self.batch_range = (lo, max(lo, max_batch if hi is None else min(hi, max_batch)))

    @property
    def num_classes(self) -> int | None:
        """Number of classes of a conditional model (label == num_classes is the null label), if recorded."""
        model = self.info.get("model")
        for value in (self.info.get("num_classes"), model.get("num_classes") if isinstance(model, dict) else None):
            if isinstance(value, int) and value > 0:
                return value
        return None


def check_graph(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], info: dict) -> GraphSpec:
    """Check a graph against the serving contract and return its spec; S4SError names what differs.

    The batch range is the fixed batch, or (1, None) for a dynamic batch (backends may narrow it).
    """
    where = f"{path} is not an s4s-export sampler graph"
    names = {t.name: t for t in inputs}
    unknown = sorted(set(names) - set(INPUTS))
    if NOISE not in names or unknown:
        raise S4SError(f"{where}: inputs {', '.join(t.describe() for t in inputs)}; expected {NOISE} [B,C,H,W]"
                       f" (and {LABELS}, {GUIDANCE} for class-conditional models); re-export it with `s4s-export build`")
    noise = names[NOISE]
    if len(noise.shape) != 4 or any(d is None for d in noise.shape[1:]):
        raise S4SError(f"{where}: {noise.describe()} should be [B,C,H,W] with fixed C, H, W")
    if GUIDANCE in names and LABELS not in names:
        raise S4SError(f"{where}: it takes {GUIDANCE} but no {LABELS}")
    if len(outputs) != 1 or len(outputs[0].shape) != 4:
        raise S4SError(f"{where}: outputs {', '.join(t.describe() for t in outputs)}; expected one {IMAGES} [B,...]")
    batch = noise.shape[0]
    return GraphSpec(names, outputs[0], (1, None) if batch is None else (batch, batch), info)


def sidecar_path(model_path: str | Path) -> Path:
    """`model.onnx` -> `model.json` (the exporter's); an engine `model.plan` -> `model.plan.json` (build_engine's)."""
    model_path = Path(model_path)
    return model_path.with_suffix(".json") if model_path.suffix == ".onnx" else model_path.with_name(model_path.name + ".json")


def read_sidecar(model_path: str | Path) -> dict:
    """The JSON sidecar next to a model file, or {} when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S4SError(f"{path} is not valid JSON ({e}); delete it or re-export the model") from None
    if not isinstance(doc, dict):
        raise S4SError(f"{path} should hold a JSON object; delete it or re-export the model")
    return doc


def parse_metadata(props: dict[str, str]) -> dict:
    """ONNX metadata_props (all strings) as values: JSON where a value parses as JSON, else the string."""
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            out[key] = value
    return out
