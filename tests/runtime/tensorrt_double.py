"""TEST DOUBLE of TensorRT and the CUDA runtime: CPU stand-ins for the `tensorrt` and `cuda.bindings.runtime`
modules, so the runtime's TensorRT build and run code executes in tests on a machine without a GPU.

This is NOT TensorRT, and nothing here runs TensorRT or CUDA. An "engine" is JSON naming the ONNX graph,
its tensors and profile; "executing" it runs the graph with onnxruntime on CPU; "device memory" is host
memory; a stream runs work at once, except while it is capturing, when the work is recorded into a
"CUDA graph" that a launch replays. Class, method and constant names follow the real bindings
(test_trt_api_surface.py checks them against TensorRT 10.16 / 11.4 and cuda-bindings 13.5), and so do the
return conventions: `(cudaError_t, value)` tuples, `None` from a failed deserialize or build, `False` from a
refused input shape. Behaviour only has to be plausible. What tests with it show: our code's calls, their
order and bookkeeping (engine cache, request splitting, capture and replay, per-thread contexts, dtype
handling); nothing about TensorRT's numerics, kernels, memory use or speed.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import json
import sys
import threading
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx

_ONNX_TYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8", 3: "int8", 9: "bool"}


class ContextSharedAcrossThreads(AssertionError):
    """Raised by the double when one execution context runs in two threads (TensorRT forbids it; it would race)."""


class TensorRTDouble:
    """The two fake modules, the knobs tests turn and the calls they inspect.

    Knobs: `gpu_name` / `compute` (the one "GPU"), `fail_capture` (stream captures end invalidated),
    `int32_inputs` (engines take int32 where the graph has int64, to exercise input casting).
    Records: `builds`, `build_severities` (the logger's level at each build), `loggers`, `contexts`,
    `runs` [(batch, "stream" | "graph", thread id)], `captures`, `launches`.
    """

    def __init__(self, gpu_name: str = "Test-double GPU A", compute: tuple[int, int] = (9, 0),
                 version: str = "10.16.1.11"):
        self.gpu_name, self.compute, self.version = gpu_name, compute, version
        self.fail_capture = self.int32_inputs = False
        self.builds, self.captures, self.launches = 0, 0, 0
        self.loggers: list = []
        self.build_severities: list[int] = []
        self.contexts: list = []
        self.runs: list[tuple[int, str, int]] = []
        self.memory = _Memory()
        self.capturing: dict[int, list] = {}
        self.sessions: dict[str, object] = {}
        self.lock = threading.Lock()
        self.trt = _module("tensorrt", self, _TRT_MEMBERS, __version__=version)
        self.cudart = _cudart_module(self)

    def install(self, monkeypatch) -> None:
        """Make `import tensorrt` and `from cuda.bindings import runtime` give this double (undone by monkeypatch)."""
        cuda, bindings = ModuleType("cuda"), ModuleType("cuda.bindings")
        cuda.bindings, bindings.runtime = bindings, self.cudart
        for name, module in {"tensorrt": self.trt, "cuda": cuda, "cuda.bindings": bindings,
                             "cuda.bindings.runtime": self.cudart}.items():
            monkeypatch.setitem(sys.modules, name, module)

    def count(self, record: str) -> None:
        """Add one to a counter; thread-safe (the runner's threads share the double)."""
        with self.lock:
            setattr(self, record, getattr(self, record) + 1)

    @property
    def compute_capability(self) -> str:
        return f"{self.compute[0]}.{self.compute[1]}"

    def session(self, onnx_path: str):
        import onnxruntime

        with self.lock:
            if onnx_path not in self.sessions:
                self.sessions[onnx_path] = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            return self.sessions[onnx_path]


def _module(name: str, double: TensorRTDouble, members: list, **attrs) -> ModuleType:
    """A module holding `members`; classes are subclassed with `_double` bound, so constructors keep real signatures."""
    module = ModuleType(name, f"TEST DOUBLE of {name} (tests/runtime/tensorrt_double.py), not the real module")
    for member in members:
        plain = not isinstance(member, type) or issubclass(member, enum.Enum)
        setattr(module, member.__name__,
                member if plain else type(member.__name__, (member,), {"_double": double, "__module__": name}))
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


class _Memory:
    """Host buffers standing in for device allocations; copies into or out of them are bounds-checked."""

    def __init__(self):
        self.buffers: dict[int, ctypes.Array] = {}
        self.lock = threading.Lock()

    def alloc(self, nbytes: int) -> int:
        buffer = ctypes.create_string_buffer(nbytes)
        with self.lock:
            self.buffers[ctypes.addressof(buffer)] = buffer
        return ctypes.addressof(buffer)

    def free(self, ptr: int) -> bool:
        with self.lock:
            return self.buffers.pop(ptr, None) is not None

    def inside(self, ptr: int, nbytes: int) -> bool:
        with self.lock:
            return any(start <= ptr and ptr + nbytes <= start + len(b) for start, b in self.buffers.items())


# --- tensorrt -----------------------------------------------------------------------------------------------


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = WARNING):
        self.min_severity = min_severity
        self._double.loggers.append(self)

    def log(self, severity: int, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[test-double TensorRT] {msg}", file=sys.stderr)


class DataType:
    FLOAT, HALF, INT8, INT32, BOOL, UINT8, INT64 = (np.dtype(t) for t in
                                                     ("float32", "float16", "int8", "int32", "bool", "uint8", "int64"))


def nptype(trt_type: np.dtype) -> type:
    return trt_type.type


class TensorIOMode:
    NONE, INPUT, OUTPUT = "NONE", "INPUT", "OUTPUT"


class NetworkDefinitionCreationFlag:
    STRONGLY_TYPED = 1


class BuilderFlag:
    TF32 = 6


class HardwareCompatibilityLevel:
    NONE, AMPERE_PLUS, SAME_COMPUTE_CAPABILITY = range(3)


class MemoryPoolType:
    WORKSPACE = 0


class IHostMemory(bytes):
    """Serialized data; the real one exposes the buffer protocol, as bytes does."""

    @property
    def nbytes(self) -> int:
        return len(self)


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: np.dtype):
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int):
        self.flags, self.inputs, self.outputs, self.onnx = flags, [], [], None

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]


class ParserError:
    def __init__(self, desc: str):
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return -1

    def node_name(self) -> str:
        return ""

    def node_operator(self) -> str:
        return ""


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger):
        self.network, self.logger, self.errors = network, logger, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def clear_errors(self) -> None:
        self.errors.clear()

    def parse_from_file(self, model: str) -> bool:
        try:
            graph = onnx.load(model, load_external_data=False).graph
        except Exception as e:  # onnx raises DecodeError and others for junk files
            self.errors.append(ParserError(f"failed to parse the ONNX file ({type(e).__name__})"))
            return False
        weights = {t.name for t in graph.initializer}

        def tensor(value, is_input: bool) -> ITensor:
            t = value.type.tensor_type
            dtype = np.dtype(_ONNX_TYPES[t.elem_type])
            if dtype == np.int64 and is_input and self._double.int32_inputs:
                dtype = np.dtype("int32")
            return ITensor(value.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim),
                           dtype)

        self.network.inputs = [tensor(v, True) for v in graph.input if v.name not in weights]
        self.network.outputs = [tensor(v, False) for v in graph.output]
        self.network.onnx = str(Path(model).resolve())
        return True


class IOptimizationProfile:
    def __init__(self):
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min: tuple, opt: tuple, max: tuple) -> None:  # noqa: A002 (the real names)
        if not len(min) == len(opt) == len(max) or not all(0 <= a <= b <= c for a, b, c in zip(min, opt, max)):
            raise ValueError(f"inconsistent profile shapes for {input}: {min}, {opt}, {max}")
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    def __init__(self, compute: str, entries: int):
        self.compute, self.entries = compute, entries

    def serialize(self) -> IHostMemory:
        return IHostMemory(json.dumps({"test_double_timing_cache": self.compute, "entries": self.entries}).encode())


class IBuilderConfig:
    def __init__(self, double: TensorRTDouble):
        self._double, self.profiles, self.flags_set = double, [], {BuilderFlag.TF32}
        self.builder_optimization_level, self.hardware_compatibility_level = 3, HardwareCompatibilityLevel.NONE
        self.cache, self.pools = None, {}

    def set_flag(self, flag: int) -> None:
        self.flags_set.add(flag)

    def clear_flag(self, flag: int) -> None:
        self.flags_set.discard(flag)

    def get_flag(self, flag: int) -> bool:
        return flag in self.flags_set

    def set_memory_pool_limit(self, pool: int, pool_size: int) -> None:
        self.pools[pool] = pool_size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile.shapes:
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        doc = json.loads(serialized_timing_cache) if serialized_timing_cache else {}
        return ITimingCache(doc.get("test_double_timing_cache", self._double.compute_capability), doc.get("entries", 0))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.compute != self._double.compute_capability and not ignore_mismatch:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache:
        return self.cache


class Builder:
    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._double)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        profile = config.profiles[0].shapes if config.profiles else {}
        if any(-1 in t.shape and t.name not in profile for t in network.inputs):
            self.logger.log(Logger.ERROR, "a dynamic input has no optimization profile")
            return None
        double = self._double
        double.count("builds")
        double.build_severities.append(self.logger.min_severity)
        if config.cache is not None:
            config.cache.entries += 1
        io = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name, "mode": mode}
              for ts, mode in ((network.inputs, TensorIOMode.INPUT), (network.outputs, TensorIOMode.OUTPUT))
              for t in ts]
        return IHostMemory(json.dumps({
            "test_double_plan": True, "onnx": network.onnx, "io": io, "version": double.version,
            "compute": double.compute_capability,
            "profile": {name: [list(s) for s in shapes] for name, shapes in profile.items()}}).encode())


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        double = self._double
        try:
            plan = json.loads(serialized_engine)
        except (UnicodeDecodeError, json.JSONDecodeError):
            plan = {}
        if not plan.get("test_double_plan") or (plan["version"], plan["compute"]) != (double.version,
                                                                                      double.compute_capability):
            self.logger.log(Logger.ERROR, "the plan is not for this TensorRT version and GPU")
            return None
        return ICudaEngine(double, plan)


class ICudaEngine:
    def __init__(self, double: TensorRTDouble, plan: dict):
        self._double, self.plan = double, plan
        self.io = {t["name"]: t for t in plan["io"]}

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, index: int) -> str:
        return list(self.io)[index]

    def get_tensor_mode(self, name: str) -> str:
        return self.io[name]["mode"]

    def get_tensor_dtype(self, name: str) -> np.dtype:
        return np.dtype(self.io[name]["dtype"])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.io[name]["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.plan["profile"][name]]

    def create_execution_context(self) -> IExecutionContext:
        context = IExecutionContext(self)
        self._double.contexts.append(context)
        return context


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine, self.shapes, self.addresses, self.owner = engine, {}, {}, None

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        tensor, profile = self.engine.io.get(name), self.engine.plan["profile"].get(name)
        if tensor is None or tensor["mode"] != TensorIOMode.INPUT or profile is None or len(shape) != len(profile[0]):
            return False
        if not all(lo <= d <= hi for d, lo, hi in zip(shape, profile[0], profile[2])):
            return False
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        tensor = self.engine.io[name]
        if tensor["mode"] == TensorIOMode.INPUT:
            return self.shapes.get(name, tuple(tensor["shape"]))
        batch = self.get_tensor_shape("noise")[0]
        return (batch, *tensor["shape"][1:])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.io:
            return False
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        thread = threading.get_ident()
        if self.owner not in (None, thread):
            raise ContextSharedAcrossThreads("test double: one IExecutionContext ran in two threads")
        self.owner = thread
        double, io = self.engine._double, self.engine.io
        shapes = {name: self.get_tensor_shape(name) for name in io}
        if any(d < 0 for s in shapes.values() for d in s) or set(self.addresses) != set(io):
            return False
        addresses, onnx_path = dict(self.addresses), self.engine.plan["onnx"]  # a capture freezes both

        def run(kind: str) -> None:
            feeds, output = {}, None
            for name, t in io.items():
                dtype, nbytes = np.dtype(t["dtype"]), int(np.prod(shapes[name])) * np.dtype(t["dtype"]).itemsize
                if not double.memory.inside(addresses[name], nbytes):
                    raise AssertionError(f"test double: {name} at {addresses[name]:#x} is smaller than {nbytes} bytes")
                if t["mode"] == TensorIOMode.INPUT:
                    data = np.frombuffer(ctypes.string_at(addresses[name], nbytes), dtype).reshape(shapes[name])
                    feeds[name] = data.astype(np.int64) if dtype == np.int32 else data
                else:
                    output = name
            result = np.ascontiguousarray(double.session(onnx_path).run([output], feeds)[0],
                                          dtype=np.dtype(io[output]["dtype"]))
            ctypes.memmove(addresses[output], result.ctypes.data, result.nbytes)
            double.runs.append((shapes["noise"][0], kind, threading.get_ident()))

        recording = double.capturing.get(int(stream_handle))
        if recording is not None:
            recording.append(lambda: run("graph"))
        else:
            run("stream")
        return True


_TRT_MEMBERS = [Logger, DataType, nptype, TensorIOMode, NetworkDefinitionCreationFlag, BuilderFlag,
              HardwareCompatibilityLevel, MemoryPoolType, IHostMemory, ITensor, INetworkDefinition, ParserError,
              OnnxParser, IOptimizationProfile, ITimingCache, IBuilderConfig, Builder, Runtime, ICudaEngine,
              IExecutionContext]


# --- cuda.bindings.runtime ----------------------------------------------------------------------------------


class cudaError_t(enum.IntEnum):  # noqa: N801 (the real names)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorIllegalState = 401
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class cudaDeviceProp:  # noqa: N801
    def __init__(self, name: bytes, major: int, minor: int):
        self.name, self.major, self.minor = name, major, minor


_HANDLES = itertools.count(0x1000)


class cudaStream_t:  # noqa: N801
    def __init__(self):
        self._handle = next(_HANDLES)

    def __int__(self) -> int:
        return self._handle


class cudaGraph_t:  # noqa: N801
    def __init__(self, work: list):
        self._work = work


class cudaGraphExec_t:  # noqa: N801
    def __init__(self, work: list):
        self._work = work


_OK = cudaError_t.cudaSuccess


class _CudaRuntime:
    """The functions of the `cuda.bindings.runtime` double (real names and arguments), bound to one TensorRTDouble."""

    def __init__(self, double: TensorRTDouble):
        self.double = double

    def cudaGetDeviceCount(self):  # noqa: N802
        return _OK, 1

    def cudaGetDeviceProperties(self, device: int):  # noqa: N802
        if device != 0:
            return cudaError_t.cudaErrorInvalidDevice, None
        return _OK, cudaDeviceProp(self.double.gpu_name.encode() + b"\0" * 8, *self.double.compute)

    def cudaSetDevice(self, device: int):  # noqa: N802
        return (_OK,) if device == 0 else (cudaError_t.cudaErrorInvalidDevice,)

    def cudaMalloc(self, size: int):  # noqa: N802
        return _OK, self.double.memory.alloc(size)

    def cudaFree(self, devPtr: int):  # noqa: N802, N803
        return (_OK,) if self.double.memory.free(devPtr) else (cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: cudaStream_t):  # noqa: N802
        device = dst if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else src
        if not self.double.memory.inside(device, count):
            return (cudaError_t.cudaErrorInvalidValue,)
        recording = self.double.capturing.get(int(stream))
        if recording is not None:
            recording.append(lambda: ctypes.memmove(dst, src, count))
        else:
            ctypes.memmove(dst, src, count)
        return (_OK,)

    def cudaStreamCreateWithFlags(self, flags: int):  # noqa: N802
        return _OK, cudaStream_t()

    def cudaStreamDestroy(self, stream: cudaStream_t):  # noqa: N802
        return (_OK,)

    def cudaStreamSynchronize(self, stream: cudaStream_t):  # noqa: N802
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,) if int(stream) in self.double.capturing else (_OK,)

    def cudaStreamBeginCapture(self, stream: cudaStream_t, mode: cudaStreamCaptureMode):  # noqa: N802
        if int(stream) in self.double.capturing:
            return (cudaError_t.cudaErrorIllegalState,)
        self.double.capturing[int(stream)] = []
        return (_OK,)

    def cudaStreamEndCapture(self, stream: cudaStream_t):  # noqa: N802
        work = self.double.capturing.pop(int(stream), None)
        if work is None:
            return cudaError_t.cudaErrorIllegalState, None
        if self.double.fail_capture:
            return cudaError_t.cudaErrorStreamCaptureInvalidated, None
        self.double.count("captures")
        return _OK, cudaGraph_t(work)

    def cudaGraphInstantiate(self, graph: cudaGraph_t, flags: int):  # noqa: N802
        return _OK, cudaGraphExec_t(graph._work)

    def cudaGraphLaunch(self, graphExec: cudaGraphExec_t, stream: cudaStream_t):  # noqa: N802, N803
        self.double.count("launches")
        for work in graphExec._work:
            work()
        return (_OK,)

    def cudaGraphDestroy(self, graph: cudaGraph_t):  # noqa: N802
        return (_OK,)

    def cudaGraphExecDestroy(self, graphExec: cudaGraphExec_t):  # noqa: N802, N803
        return (_OK,)


def _cudart_module(double: TensorRTDouble) -> ModuleType:
    functions = _CudaRuntime(double)
    module = _module("cuda.bindings.runtime", double, [cudaError_t, cudaMemcpyKind, cudaStreamCaptureMode,
                                                       cudaDeviceProp, cudaStream_t, cudaGraph_t, cudaGraphExec_t],
                     cudaStreamNonBlocking=1)
    for name in (n for n in vars(_CudaRuntime) if n.startswith("cuda")):
        setattr(module, name, getattr(functions, name))
    return module
