"""Run an exported sampler graph with ONNX Runtime: CPU, CUDA or TensorRT execution providers.

The TensorRT provider builds its engine itself on first use and caches it (engine and timing cache)
in `<model>.ort-trt/` next to the graph; its optimisation profile spans the batch range. No
`trt_fp16_enable` is set; whether the provider's networks are strongly typed (precision as in the
graph) is unverified, see docs/runtime.md.

onnxruntime quietly runs on CPU when a requested provider fails to start; here every requested provider
must be running after the session is made (an S4SError otherwise), except for the automatic default,
which falls back to CPU with a logged warning.

`OrtRunner` is the served CPU/GPU runtime and also what `s4s-export build` verifies a graph with
(s4s_export/export/verify.py), so a build checks what users run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..contract import parse_metadata, read_sidecar
from ..errors import S4SError
from .runner import Runner
from .spec import GraphSpec, TensorSpec, check_graph

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
TRT_EP_MAX_BATCH = 16  # profile max of the TensorRT provider when no max_batch is given
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise S4SError(f"onnxruntime is not installed ({e}); install it with `pip install onnxruntime` "
                       "(or onnxruntime-gpu for CUDA and TensorRT)") from None
    return onnxruntime


def default_providers() -> list[str]:
    """CUDA when this onnxruntime has it, then CPU (TensorRT only on request: its first run builds an engine).

    If CUDA then does not start, OrtRunner falls back to CPU with a warning.
    """
    available = import_onnxruntime().get_available_providers()
    return ["cuda", "cpu"] if PROVIDERS["cuda"] in available else ["cpu"]


def _spec(arg) -> TensorSpec:
    if arg.type not in _DTYPES:
        raise S4SError(f"graph tensor {arg.name} has unsupported type {arg.type}")
    return TensorSpec(arg.name, np.dtype(_DTYPES[arg.type]),
                      tuple(d if isinstance(d, int) else None for d in arg.shape))


def provider_name(name: str) -> str:
    """`cuda` -> `CUDAExecutionProvider`; full names pass through."""
    if name in PROVIDERS.values():
        return name
    if name not in PROVIDERS:
        raise S4SError(f"unknown execution provider {name!r}; choose from: {', '.join(PROVIDERS)}")
    return PROVIDERS[name]


def provider_options(providers: list[str], model_path: Path, spec_inputs: list[TensorSpec],
                     batch_range: tuple[int, int], device_id: int) -> list:
    """onnxruntime `providers=` entries, with options, for full provider names."""
    out = []
    for provider in providers:
        if provider == PROVIDERS["cuda"]:
            out.append((provider, {"device_id": device_id}))
        elif provider == PROVIDERS["tensorrt"]:
            cache = model_path.with_name(model_path.stem + ".ort-trt")
            lo, hi = batch_range
            profile = {which: ",".join(f"{t.name}:{'x'.join(str(d) for d in (b, *t.shape[1:]))}"
                                       for t in spec_inputs if t.shape and t.shape[0] is None)
                       for which, b in (("min", lo), ("opt", min(max(lo, 4), hi)), ("max", hi))}
            options = {"device_id": device_id, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                       "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
                       "trt_builder_optimization_level": 3}
            if profile["min"]:
                options |= {f"trt_profile_{which}_shapes": shapes for which, shapes in profile.items()}
            out.append((provider, options))
        else:
            out.append(provider)
    return out


class OrtRunner(Runner):
    """An onnxruntime session over a sampler graph: `spec` describes it, `infer(feeds)` returns the output.

    log_severity: onnxruntime's session log level (0 verbose .. 4 fatal); default onnxruntime's (2, warnings).
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None, device_id: int = 0,
                 max_batch: int | None = None, threads: int | None = None, log_severity: int | None = None):
        ort = import_onnxruntime()
        path = self.path = Path(path)
        automatic = providers is None
        names = default_providers() if automatic else providers
        full = [provider_name(n) for n in names]
        available = ort.get_available_providers()
        missing = [n for n, f in zip(names, full, strict=True) if f not in available]
        if missing:
            raise S4SError(f"this onnxruntime ({ort.__version__}) lacks {', '.join(missing)}: "
                           f"it has {', '.join(available)}; "
                           "CUDA and TensorRT need `pip install onnxruntime-gpu` and an NVIDIA GPU")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        if log_severity is not None:
            options.log_severity_level = log_severity
        inputs = []
        if PROVIDERS["tensorrt"] in full:  # its profile needs the input shapes; larger batches would not fit it
            inputs = [_spec(a) for a in self._session(ort, path, options, [PROVIDERS["cpu"]]).get_inputs()]
            max_batch = max_batch or TRT_EP_MAX_BATCH
            path.with_name(path.stem + ".ort-trt").mkdir(exist_ok=True)
        chosen = provider_options(full, path, inputs, (1, max_batch or TRT_EP_MAX_BATCH), device_id)
        self.session = self._started(ort, path, options, chosen, full, automatic)
        meta = parse_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.spec: GraphSpec = check_graph(path, [_spec(a) for a in self.session.get_inputs()],
                                           [_spec(a) for a in self.session.get_outputs()],
                                           {**meta, **read_sidecar(path)})
        if max_batch is not None:
            self.spec.limit_batch(max_batch)
        self.providers = self.session.get_providers()
        self._output = [self.spec.output.name]

    @classmethod
    def _started(cls, ort, path: Path, options, chosen: list, full: list[str], automatic: bool):
        """A session running every provider in `full`; for the automatic default, a CPU session and a warning."""
        try:
            session = cls._session(ort, path, options, chosen)
            failed = [p for p in full if p not in session.get_providers()]
            reason = f"it fell back to {', '.join(session.get_providers())}; onnxruntime's log above says why"
        except S4SError as e:
            if not automatic or full == [PROVIDERS["cpu"]]:
                raise
            session, failed, reason = None, [p for p in full if p != PROVIDERS["cpu"]], str(e)
        if not failed:
            return session
        if not automatic:
            raise S4SError(f"onnxruntime could not start {', '.join(failed)} for {path} ({reason}); check the NVIDIA "
                           "driver and the CUDA/cuDNN (and TensorRT) libraries onnxruntime-gpu needs, or pass "
                           "providers=['cpu']")
        if session is None:
            session = cls._session(ort, path, options, [PROVIDERS["cpu"]])
        log.warning("onnxruntime could not start %s for %s (%s); running on CPU. Pass providers=['cpu'] to skip "
                    "the attempt, or fix the GPU setup (NVIDIA driver, CUDA/cuDNN libraries)", ", ".join(failed), path,
                    reason)
        return session

    @staticmethod
    def _session(ort, path: Path, options, providers: list):
        if not path.is_file():
            raise S4SError(f"{path} does not exist; export the sampler first with `s4s-export build`")
        try:  # enable_fallback=0: a provider failing at load or at run time raises instead of switching to CPU
            return ort.InferenceSession(str(path), sess_options=options, providers=providers, enable_fallback=0)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise S4SError(f"onnxruntime could not load {path}: {first}") from None

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(self._output, feeds)[0]

    def _release(self) -> None:
        del self.session  # onnxruntime frees a session with its last reference
