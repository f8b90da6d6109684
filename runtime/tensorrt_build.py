"""Build a TensorRT engine (plan file) from an exported sampler graph, for TensorRT 10.x and 11.x.

The network is strongly typed: precision comes from the ONNX graph (TensorRT 11 has no FP16 builder
flag; an FP16 engine needs an FP16 graph). One optimisation profile covers the batch range, the
timing cache persists across builds, and an engine is built only for a key not seen before: the graph's
sha256, the GPU (name and compute capability), the TensorRT version and the fields of `TrtBuildConfig`.
Plans are cached per key in $S4S_CACHE/tensorrt/engines/<key hash>.plan and linked (or copied) to the
output path, whose sidecar (`model.plan.json`) holds the key next to the graph's own description.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..cachedir import cache_root
from ..contract import ENGINE_KEY, ONNX_KEY, graph_description, graph_files, read_sidecar, sidecar_path
from ..errors import S4SError
from ..fileio import atomic_write, atomic_write_bytes, atomic_write_text
from ..hashing import sha256_bytes, sha256_files
from .cuda import GpuInfo, check, gpu_info, import_cudart

if TYPE_CHECKING:  # annotations only; the module is imported at run time by import_tensorrt()
    import tensorrt as trt

log = logging.getLogger(__name__)

DEFAULT_BATCH_RANGE = (1, 4, 16)  # (min, opt, max); kernels are tuned for opt
MIN_HARDWARE_COMPAT_CC = 8.0  # AMPERE_PLUS engines run on Ampere and newer


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module, or an S4SError naming what is missing and how to install it."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        raise S4SError(f"TensorRT is not available ({e}); on a machine with an NVIDIA GPU install it with "
                       "`pip install tensorrt-cu12` or `pip install tensorrt-cu13` (its libraries come from NVIDIA's "
                       "package index), or serve the .onnx with onnxruntime instead") from None
    return trt


_LOGGERS: dict[ModuleType, trt.Logger] = {}  # one per tensorrt module: in practice one (tests swap in a test double)
_LOGGERS_LOCK = threading.Lock()


def trt_logger(trt: ModuleType) -> trt.Logger:
    """The process's one TensorRT logger (WARNING and up): TensorRT warns when builders and runtimes get
    different ones."""
    with _LOGGERS_LOCK:
        if trt not in _LOGGERS:
            _LOGGERS[trt] = trt.Logger(trt.Logger.WARNING)
        return _LOGGERS[trt]


@dataclass(frozen=True)
class TrtBuildConfig:
    """How an engine is built; its fields (with the graph, GPU and TensorRT version) are the engine-cache key.

    batch_range: (min, opt, max) of the optimisation profile for the batch dimension.
    opt_level: TensorRT builder optimisation level 0..5 (0 ignores the timing cache).
    hardware_compat: build for any Ampere-or-newer GPU (fewer tactics, may be slower).
    tf32: allow TF32 for FP32 convolutions and matmuls (TensorRT's default).
    workspace_bytes: the builder's workspace memory limit (None: TensorRT's default).
    """

    batch_range: tuple[int, int, int] = DEFAULT_BATCH_RANGE
    opt_level: int = 3
    hardware_compat: bool = False
    tf32: bool = True
    workspace_bytes: int | None = None

    def __post_init__(self):
        b = self.batch_range
        if not isinstance(b, (tuple, list)) or len(b) != 3 or not all(isinstance(x, int) for x in b) \
                or not 1 <= b[0] <= b[1] <= b[2]:
            raise S4SError(f"batch_range must be three integers 1 <= min <= opt <= max; got {b!r}")
        if not isinstance(self.opt_level, int) or not 0 <= self.opt_level <= 5:
            raise S4SError(f"opt_level must be an integer 0..5 (TensorRT builder optimisation level); "
                           f"got {self.opt_level!r}")
        object.__setattr__(self, "batch_range", tuple(b))

    def key(self) -> dict:
        """The fields as JSON values (`dataclasses.asdict`, tuples as lists), as the engine sidecar records them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def onnx_sha256(onnx_path: Path) -> str:
    """sha256 of the graph file and of its external weights `<file>.data`, when present."""
    return sha256_files(graph_files(onnx_path))


def engine_key(onnx_path: Path, gpu: GpuInfo, trt_version: str, config: TrtBuildConfig) -> dict:
    """Everything an engine depends on; equal keys mean the existing engine can be reused."""
    return {"onnx_sha256": onnx_sha256(onnx_path), "gpu": gpu.name, "compute_capability": gpu.compute_capability,
            "tensorrt": trt_version, **config.key()}


def engine_cache_path(key: dict) -> Path:
    """Where the plan for `key` is cached: $S4S_CACHE/tensorrt/engines/<sha256 of the key>.plan."""
    digest = sha256_bytes(json.dumps(key, sort_keys=True).encode())[:32]
    return cache_root() / "tensorrt" / "engines" / f"{digest}.plan"


def check_engine_target(path: Path, key: dict, gpu: GpuInfo, trt_version: str) -> None:
    """Refuse an engine built for another TensorRT version or GPU, naming both and how to rebuild."""
    problems = []
    if key.get("tensorrt") != trt_version:
        problems.append(f"TensorRT {key.get('tensorrt')} (here: {trt_version})")
    if key.get("hardware_compat"):
        if float(gpu.compute_capability) < MIN_HARDWARE_COMPAT_CC:
            problems.append(f"Ampere or newer GPUs (here: {gpu.name}, compute {gpu.compute_capability})")
    elif (key.get("gpu"), key.get("compute_capability")) != (gpu.name, gpu.compute_capability):
        problems.append(f"{key.get('gpu')} (compute {key.get('compute_capability')}; here: {gpu.name}, "
                        f"compute {gpu.compute_capability})")
    if problems:
        raise S4SError(f"{path} was built for {' and '.join(problems)}; rebuild it on this machine with "
                       "`s4s-export build --trt` or runtime.build_engine(onnx_path)")


def build_engine(onnx_path: str | Path, out_path: str | Path | None = None, config: TrtBuildConfig | None = None, *,
                 timing_cache: str | Path | None = None, device_id: int = 0, force: bool = False,
                 verbose: bool = False, **settings) -> Path:
    """Build (or reuse) the engine for `onnx_path`; returns the plan path (default: next to the graph, `.plan`).

    config: the build settings (TrtBuildConfig); `**settings` are its fields as a shorthand
        (`build_engine(path, batch_range=(1, 8, 16))`), not to be combined with `config`.
    timing_cache: timing cache file, read if present and updated after the build
        (default: one per TensorRT version and GPU in $S4S_CACHE/tensorrt, ~/.cache/s4s-export/tensorrt).
    force: rebuild even when an engine with the same key exists (in out_path or the engine cache).
    verbose: show TensorRT's INFO messages during this build.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise S4SError(f"{onnx_path} does not exist; export the sampler first with `s4s-export build`")
    config = _config(config, settings)
    out_path = Path(out_path) if out_path is not None else onnx_path.with_suffix(".plan")
    trt = import_tensorrt()
    gpu = gpu_info(device_id)
    key = engine_key(onnx_path, gpu, trt.__version__, config)
    if not force and out_path.is_file() and read_sidecar(out_path).get(ENGINE_KEY) == key:
        log.info("engine %s is up to date", out_path)
        return out_path
    cached = engine_cache_path(key)
    if force or not (cached.is_file() and read_sidecar(cached).get(ENGINE_KEY) == key):
        check(import_cudart().cudaSetDevice(device_id))
        logger: trt.Logger = trt_logger(trt)
        logger.min_severity = trt.Logger.INFO if verbose else trt.Logger.WARNING
        try:
            plan = _build(trt, logger, onnx_path, gpu, config, timing_cache)
        finally:
            logger.min_severity = trt.Logger.WARNING
        _replace_plan(cached, lambda tmp: tmp.write_bytes(plan), {ENGINE_KEY: key})
    else:
        log.info("reusing the cached engine %s for %s", cached, onnx_path)
    _replace_plan(out_path, lambda tmp: _link_or_copy(cached, tmp),
                  {**graph_description(onnx_path), ONNX_KEY: onnx_path.name, ENGINE_KEY: key})
    return out_path


def _config(config: TrtBuildConfig | None, settings: dict) -> TrtBuildConfig:
    """`config`, or a TrtBuildConfig of the keyword settings; S4SError naming an unknown setting."""
    fields = [f.name for f in dataclasses.fields(TrtBuildConfig)]
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise S4SError(f"unknown build setting {', '.join(unknown)}; TrtBuildConfig has: {', '.join(fields)}")
    if config is not None and settings:
        raise S4SError(f"pass the build settings either as config= or as keywords ({', '.join(sorted(settings))}), "
                       "not both: dataclasses.replace(config, ...) changes a config")
    return config if config is not None else TrtBuildConfig(**settings)


def _replace_plan(path: Path, write: Callable[[Path], None], description: dict) -> None:
    """Replace a plan and its sidecar; the old sidecar goes first, so a crash never pairs a key with another plan."""
    sidecar_path(path).unlink(missing_ok=True)
    atomic_write(path, write)
    atomic_write_text(sidecar_path(path), json.dumps(description, indent=1) + "\n")


def _link_or_copy(src: Path, tmp: Path) -> None:
    """Put `src` at `tmp` as a hard link (no second copy of a large plan), or as a copy across file systems."""
    tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)


def _build(trt: ModuleType, logger: trt.Logger, onnx_path: Path, gpu: GpuInfo, build: TrtBuildConfig,
           timing_cache: str | Path | None) -> bytes:
    """Parse the graph and build the serialized engine, updating the timing cache."""
    builder: trt.Builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # opt-in on 10.x; always on (flag ignored) on 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network: trt.INetworkDefinition = builder.create_network(flags)
    parser: trt.OnnxParser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise S4SError(_parse_failure(onnx_path, parser))
    config: trt.IBuilderConfig = builder.create_builder_config()
    config.builder_optimization_level = build.opt_level
    if not build.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if build.hardware_compat:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if build.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, build.workspace_bytes)
    _add_profile(builder, network, config, build.batch_range, onnx_path)
    cache_path = Path(timing_cache) if timing_cache is not None \
        else cache_root() / "tensorrt" / f"timing-trt{trt.__version__}-sm{gpu.compute_capability}.cache"
    cache: trt.ITimingCache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    if not config.set_timing_cache(cache, False):
        log.warning("timing cache %s was made on another GPU or TensorRT version; starting a new one", cache_path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    log.info("building TensorRT %s engine for %s (%s), batch range %s", trt.__version__, gpu.name, onnx_path,
             build.batch_range)
    plan: trt.IHostMemory = builder.build_serialized_network(network, config)
    if plan is None:
        raise S4SError(f"TensorRT could not build an engine from {onnx_path} (its log above says why); "
                       "try a larger workspace_bytes or a lower opt_level")
    updated: trt.ITimingCache = config.get_timing_cache()
    atomic_write_bytes(cache_path, bytes(memoryview(updated.serialize())))
    return bytes(memoryview(plan))


def _parse_failure(onnx_path: Path, parser: trt.OnnxParser) -> str:
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    if not errors:
        return f"TensorRT could not parse {onnx_path}; re-export it (opset 17 to 24)"
    first: trt.ParserError = errors[0]
    return (f"TensorRT could not parse {onnx_path}: {first.desc()} (node {first.node_name() or first.node()}, "
            f"op {first.node_operator()}){f'; {len(errors) - 1} more errors' if len(errors) > 1 else ''}")


def _add_profile(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig,
                 batch_range: tuple[int, int, int], onnx_path: Path) -> None:
    """One optimisation profile: the batch dimension of every batched input spans batch_range."""
    profile: trt.IOptimizationProfile = builder.create_optimization_profile()
    dynamic = False
    for i in range(network.num_inputs):
        tensor: trt.ITensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise S4SError(f"{onnx_path}: input {tensor.name} {list(shape)} has a dynamic non-batch dimension; "
                           "only the batch dimension may be dynamic")
        if shape and shape[0] < 0:
            dynamic = True
            profile.set_shape(tensor.name, *[(b, *shape[1:]) for b in batch_range])
    if dynamic and config.add_optimization_profile(profile) < 0:
        raise S4SError(f"TensorRT rejected the optimisation profile {batch_range} for {onnx_path}")
