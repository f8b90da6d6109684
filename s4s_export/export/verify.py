"""Verification run at every build: ONNX checker, ONNX Runtime (CPU) against the PyTorch module, stats.

The ONNX Runtime side is the served runtime itself (`OrtRunner` of s4s_export.runtime on the CPU
provider), so a build verifies what users run.

Relative error is max|ort - torch| / max|torch| over every output value of the check (float
outputs); uint8 outputs are compared in levels. Inputs are fixed: the held-out noise seed, for
guided graphs conditional labels and the null label, and a guidance scale other than the default
on the second run (`verification_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from ..contract import GUIDANCE, INPUTS, LABELS, NOISE
from ..errors import S4SError
from ..noise import VALIDATION_SEED, label_set, noise_set
from ..runtime import OrtRunner
from .graph import SamplerGraph
from .inspect import graph_facts
from .latent_graph import LatentSamplerGraph

Inputs = tuple[torch.Tensor, ...] | dict[str, torch.Tensor]  # a SamplerGraph's positional inputs or graph names

# ORT vs PyTorch limits (max relative error). fp32 is the acceptance limit. Half-precision graphs
# run different kernels: ORT computes fp16 convolutions through float32 casts, PyTorch in fp16.
LIMITS = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
UINT8_LIMIT = 1  # levels: float differences of ~1e-7 may still cross a rounding boundary
DEVIATION_SAMPLES = 8
# half vs fp32 RMSE limits, relative to max|fp32 output| (images: 1): catch overflow and broken casts, not
# the rounding differences a few sampling steps amplify (docs/export.md "Precision" has measured values)
DEVIATION_LIMITS = {"fp16": 0.05, "bf16": 0.1}
SIZE_TARGET = 1.1  # the .onnx (+ .data) should be at most this many times the denoiser's weight bytes
SIZE_KEY = "size_within_1.1x"
BF16_NOT_RUN = ("bf16: not executed here (ONNX Runtime CPU has no bfloat16 Conv); deviation vs fp32 measured in "
                "PyTorch only")


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
            if not s[SIZE_KEY]:
                out.append(f"warning: the graph is {s['size_ratio']:.3f}x the denoiser's weight bytes, over the "
                           f"{SIZE_TARGET}x target: the unrolled structure outweighs a small network's weights, "
                           "or weights are stored more than once")
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
                 guidance_scale: float | list[float], seed: int = VALIDATION_SEED, null_label: bool = True
                 ) -> tuple[torch.Tensor, ...]:
    """Fixed inputs: noise [batch, *shape]; for guided graphs class labels and one scale per sample [batch].

    The labels are seeded classes; with `null_label` the last one is the null label (unconditional).
    `guidance_scale` is one number for every sample, or `batch` numbers.
    """
    noise = noise_set(shape, batch, seed)
    if not module.guided:
        return (noise,)
    labels = label_set(num_classes, batch, seed)
    if null_label:
        labels[-1] = num_classes
    return noise, labels, torch.as_tensor(guidance_scale, dtype=torch.float32).expand(batch).clone()


def verification_inputs(module: SamplerGraph, shape: tuple[int, ...], batch: tuple[int, int], num_classes: int,
                        guidance_scale: float) -> list[tuple[torch.Tensor, ...]]:
    """Input sets for the ONNX Runtime comparison over a batch range (min, max).

    The smallest batch and 3 (so a dynamic batch is exercised). Per-sample scales: with two sets the
    first is at the default scale throughout and the second alternates default + 1 and default; a
    single set alternates default and default + 1. Guided graphs always see conditional labels and the
    null label: a static batch of 1 (whose one sample is the null label) gets a second, labelled set at
    scale default + 1.
    """
    lo, hi = batch
    sizes = sorted({lo, min(hi, max(lo, 3))})

    def scales(i: int, b: int) -> list[float]:
        return [guidance_scale + (0 if i == 0 and len(sizes) > 1 else (i + j) % 2) for j in range(b)]

    sets = [check_inputs(module, shape, b, num_classes, scales(i, b)) for i, b in enumerate(sizes)]
    if module.guided and sizes == [1]:
        sets.append(check_inputs(module, shape, 1, num_classes, guidance_scale + 1, null_label=False))
    return sets


def latent_verification_inputs(module: LatentSamplerGraph, batch: tuple[int, int], guidance_scale: float
                               ) -> list[dict[str, torch.Tensor]]:
    """Input sets of a latent/text graph: the smallest batch unguided (scale 1), then batch 3 (within the range)
    with per-sample scales alternating `guidance_scale` (7.5 when that is 1) and 1; class graphs see the null
    label in both."""
    lo, hi = batch
    scale = guidance_scale if guidance_scale != 1.0 else 7.5
    second = min(hi, max(lo, 3))
    sets = [module.example_inputs(lo, 1.0)]
    guided = module.example_inputs(second, scale, seed=VALIDATION_SEED + 1)
    if module.guided:
        guided[GUIDANCE] = torch.tensor([scale if i % 2 == 0 else 1.0 for i in range(second)], dtype=torch.float32)
    return [*sets, guided] if module.guided or second != lo else sets


def as_feeds(inputs: Inputs) -> dict[str, torch.Tensor]:
    """Inputs by graph name (a SamplerGraph's positional inputs are noise[, class_labels, guidance_scale])."""
    return inputs if isinstance(inputs, dict) else dict(zip(INPUTS, inputs))


def torch_outputs(module: SamplerGraph | LatentSamplerGraph, inputs: Inputs) -> np.ndarray:
    with torch.no_grad():
        return module(**as_feeds(inputs)).numpy()


def cpu_runner(path: Path) -> OrtRunner:
    """The served runtime's CPU runner over a graph, with onnxruntime's warnings off (errors still raise)."""
    return OrtRunner(path, providers=["cpu"], log_severity=3)


def cpu_session(path: Path, threads: int | None = None):
    """A bare onnxruntime CPU session (for graphs outside the sampler contract, e.g. the text encoder)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_outputs(runner: OrtRunner, inputs: Inputs) -> np.ndarray:
    """The runner's output for module inputs (positional in graph order, or by name)."""
    return runner.infer({name: t.numpy() for name, t in as_feeds(inputs).items()})


def checker(path: Path) -> Check:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        return Check("onnx.checker", False, str(e).strip().splitlines()[0])
    return Check("onnx.checker", True, "valid (full check with shape inference)")


def input_summary(module: SamplerGraph | LatentSamplerGraph, input_sets: list[Inputs]) -> str:
    """`batch 1, 3 (...)`: batch sizes, labelled/null samples, guidance scales of the checked inputs."""
    feeds = [as_feeds(inputs) for inputs in input_sets]
    text = "batch " + ", ".join(str(f[NOISE].shape[0]) for f in feeds)
    if not module.guided:
        return text
    parts = []
    if LABELS in feeds[0]:
        labels = torch.cat([f[LABELS] for f in feeds])
        null = int((labels == module.sampler.denoiser.info.num_classes).sum())
        parts.append(f"{len(labels) - null} labelled, {null} null")
    scales = sorted({float(v) for f in feeds for v in f[GUIDANCE].reshape(-1)})
    parts.append("guidance scales " + ", ".join(f"{v:g}" for v in scales))
    return f"{text} ({'; '.join(parts)})"


def compare_runtime(path: Path, module: SamplerGraph | LatentSamplerGraph, precision: str,
                    input_sets: list[Inputs]) -> Check:
    """ONNX Runtime CPU vs the PyTorch module on each input set."""
    import onnxruntime as ort

    name = f"ORT {ort.__version__} CPU vs PyTorch"
    try:
        runner = cpu_runner(path)
    except S4SError as e:  # any load error is reported, not raised
        if precision == "bf16" and "NOT_IMPLEMENTED" in str(e):  # a missing kernel, not a broken graph
            return Check(name, None, BF16_NOT_RUN)
        return Check(name, False, str(e))
    batches = input_summary(module, input_sets).removeprefix("batch ")
    with runner:
        ort_out = [ort_outputs(runner, inputs) for inputs in input_sets]
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


def precision_deviation(half: SamplerGraph | LatentSamplerGraph, full: SamplerGraph | LatentSamplerGraph,
                        inputs: Inputs, precision: str) -> Check:
    """A half-precision module against the fp32 one (both float outputs), in PyTorch: fails on a non-finite
    output or an RMSE over DEVIATION_LIMITS[precision] times max|fp32 output| (1 for images in [-1, 1])."""
    a, b = torch_outputs(half, inputs).astype(np.float64), torch_outputs(full, inputs).astype(np.float64)
    samples = as_feeds(inputs)[NOISE].shape[0]
    if not np.isfinite(a).all():
        return Check(f"{precision} vs fp32 (PyTorch, {samples} samples)", False,
                     f"{int((~np.isfinite(a)).sum())} non-finite values: the network overflows in {precision}")
    max_abs, rmse = float(np.abs(a - b).max()), float(np.sqrt(np.mean((a - b) ** 2)))
    latents = getattr(full, "output", "float") == "latent"
    limit = DEVIATION_LIMITS[precision] * (max(float(np.abs(b).max()), 1e-12) if latents else 1.0)
    where = "on latents" if latents else "on images in [-1, 1]"
    return Check(f"{precision} vs fp32 (PyTorch, {samples} samples)", rmse <= limit,
                 f"max abs {max_abs:.2e}, RMSE {rmse:.2e} {where} (RMSE limit {limit:.1e})")


def graph_stats(path: Path, weights_bytes: int) -> dict:
    """Opset, node count and op histogram of the written graph, its size, its ratio to the weights and
    whether that ratio is within SIZE_TARGET (reported, not a failure)."""
    f = graph_facts(path, onnx.load(str(path), load_external_data=False))
    size = f["bytes"]
    return {"opset": f["opset"], "ir_version": f["ir_version"], "nodes": f["nodes"], "file_bytes": size,
            "external_data": f["external_data"], "weights_bytes": weights_bytes, "size_ratio": size / weights_bytes,
            SIZE_KEY: size <= SIZE_TARGET * weights_bytes, "ops": f["ops"]}
