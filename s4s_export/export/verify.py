"""Verification run at every build: ONNX checker, ONNX Runtime (CPU) against the PyTorch module, stats.

Relative error is max|ort - torch| / max|torch| over every output value of the check (float
outputs); uint8 outputs are compared in levels. Inputs are fixed: the held-out noise seed, labels
that include the null label, and a guidance scale other than the default on the second run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from ..noise import VALIDATION_SEED, label_set, noise_set
from .graph import SamplerGraph

# ORT vs PyTorch limits (max relative error). fp32 is the acceptance limit. Half-precision graphs
# run different kernels: ORT computes fp16 convolutions through float32 casts, PyTorch in fp16.
LIMITS = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
UINT8_LIMIT = 1  # levels: float differences of ~1e-7 may still cross a rounding boundary
DEVIATION_SAMPLES = 8


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped (detail says why)
    detail: str

    def line(self) -> str:
        status = "skipped" if self.ok is None else ("ok" if self.ok else "FAILED")
        return f"  {self.name}: {self.detail} [{status}]"


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if c.ok is False]

    def lines(self) -> list[str]:
        s = self.stats
        out = ["verification:", *(c.line() for c in self.checks)]
        if s:
            ratio = f" = {s['size_ratio']:.3f}x the denoiser's {s['weights_bytes'] / 1e6:.2f} MB of weights"
            out.append(f"graph: opset {s['opset']}, {s['nodes']:,} nodes, {s['file_bytes'] / 1e6:.2f} MB{ratio}"
                       f"{', external data' if s['external_data'] else ''}")
            out.append("ops: " + ", ".join(f"{op} {n}" for op, n in s["ops"].items()))
        return out

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
                "stats": self.stats}


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b| (float64); 0 when both are all zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.abs(b).max(initial=0.0)
    diff = np.abs(a - b).max(initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def check_inputs(module: SamplerGraph, shape: tuple[int, ...], batch: int, num_classes: int,
                 guidance_scale: float, seed: int = VALIDATION_SEED) -> tuple[torch.Tensor, ...]:
    """Fixed inputs: noise [batch, *shape]; for guided graphs labels (the last one null) and a scale."""
    noise = noise_set(shape, batch, seed)
    if not module.guided:
        return (noise,)
    labels = label_set(num_classes, batch, seed)
    labels[-1] = num_classes
    return noise, labels, torch.tensor(guidance_scale, dtype=torch.float32)


def torch_outputs(module: SamplerGraph, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    with torch.no_grad():
        return module(*inputs).numpy()


def ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_outputs(session, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]


def checker(path: Path) -> Check:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        return Check("onnx.checker", False, str(e).strip().splitlines()[0])
    return Check("onnx.checker", True, "valid (full check with shape inference)")


def compare_runtime(path: Path, module: SamplerGraph, precision: str,
                    input_sets: list[tuple[torch.Tensor, ...]]) -> Check:
    """ONNX Runtime CPU vs the PyTorch module on each input set."""
    import onnxruntime as ort

    name = f"ORT {ort.__version__} CPU vs PyTorch"
    try:
        session = ort_session(path)
    except Exception as e:  # noqa: BLE001 (any ORT load error is reported, not raised)
        first = str(e).strip().splitlines()[0]
        if precision == "bf16":
            return Check(name, None, f"onnxruntime has no CPU kernels for this bfloat16 graph ({first[:160]})")
        return Check(name, False, f"onnxruntime cannot load the graph: {first}")
    batches = ", ".join(str(inputs[0].shape[0]) for inputs in input_sets)
    ort_out = [ort_outputs(session, inputs) for inputs in input_sets]
    ref = [torch_outputs(module, inputs) for inputs in input_sets]
    if module.output == "uint8":
        levels = max(int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(ort_out, ref))
        differ = sum(int((a != b).sum()) for a, b in zip(ort_out, ref))
        total = sum(a.size for a in ref)
        return Check(name, levels <= UINT8_LIMIT, f"batch {batches}: uint8 max difference {levels} level(s), "
                     f"{differ} of {total} values differ (limit {UINT8_LIMIT})")
    err = max(relative_error(a, b) for a, b in zip(ort_out, ref))
    limit = LIMITS[precision]
    return Check(name, err <= limit, f"batch {batches}: max relative error {err:.2e} (limit {limit:.0e})")


def precision_deviation(half: SamplerGraph, full: SamplerGraph, inputs: tuple[torch.Tensor, ...],
                        precision: str) -> Check:
    """A half-precision module against the fp32 one (both float outputs), in PyTorch."""
    a, b = torch_outputs(half, inputs).astype(np.float64), torch_outputs(full, inputs).astype(np.float64)
    max_abs, rmse = float(np.abs(a - b).max()), float(np.sqrt(np.mean((a - b) ** 2)))
    return Check(f"{precision} vs fp32 (PyTorch, {inputs[0].shape[0]} samples)", True,
                 f"max abs {max_abs:.2e}, RMSE {rmse:.2e} on images in [-1, 1]")


def graph_stats(path: Path, weights_bytes: int) -> dict:
    """Opset, node count and op histogram of the written graph, its size and its ratio to the weights."""
    model = onnx.load(str(path), load_external_data=False)
    ops = Counter(node.op_type for node in model.graph.node)
    data = path.with_name(path.name + ".data")
    size = path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
    return {"opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "ir_version": model.ir_version, "nodes": len(model.graph.node), "file_bytes": size,
            "external_data": data.is_file(), "weights_bytes": weights_bytes, "size_ratio": size / weights_bytes,
            "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}
