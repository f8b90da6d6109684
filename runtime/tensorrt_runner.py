"""Run a TensorRT engine with execute_async_v3 on device buffers from cuda-python (no torch).

The engine is shared; each thread gets its own execution context, stream and device buffers (sized for the
largest batch), since a context must not run in two threads at once. With `cuda_graph_batch`, each thread
also keeps a second context fixed at that batch and bound to the same buffers: its first run there is
captured as a CUDA graph, and later runs at that batch replay it, whatever batches run in between (the
cost: a second context's activation memory per thread). If a capture fails, a warning is logged once and
the runner carries on without CUDA graphs; the run that tried the capture keeps its result.
`close()` frees every thread's graphs, streams and buffers, then the engine.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..contract import ENGINE_KEY, NOISE, read_sidecar, sidecar_path
from ..errors import S4SError
from .cuda import DeviceBuffer, check, gpu_info, import_cudart
from .runner import Runner
from .spec import GraphSpec, TensorSpec, check_graph
from .tensorrt_build import check_engine_target, import_tensorrt, trt_logger

if TYPE_CHECKING:  # annotations only; the module is imported at run time by import_tensorrt()
    import tensorrt as trt

log = logging.getLogger(__name__)


class TrtRunner(Runner):
    """A deserialized engine: `spec` describes it, `infer(feeds)` returns the output as numpy.

    max_batch: largest batch per run (capped to the engine's profile, never below its minimum).
    cuda_graph_batch: replay runs at this batch as a CUDA graph; it must lie in the (capped) batch range.
    """

    def __init__(self, path: str | Path, device_id: int = 0, max_batch: int | None = None,
                 cuda_graph_batch: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise S4SError(f"{path} does not exist; build it with `s4s-export build --trt`")
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise S4SError(f"{path} has no sidecar {sidecar.name} (build_engine writes it: number of classes, default "
                           "guidance scale, GPU and TensorRT version); rebuild with `s4s-export build --trt` or "
                           f"runtime.build_engine(onnx_path), or for a plan made by other tools copy the graph's "
                           f"<name>.json to {sidecar}")
        if cuda_graph_batch is not None and (not isinstance(cuda_graph_batch, int) or isinstance(cuda_graph_batch, bool)
                                             or cuda_graph_batch < 1):
            raise S4SError(f"cuda_graph_batch must be a positive integer batch size; got {cuda_graph_batch!r}")
        trt = self._trt = import_tensorrt()
        self._cudart = import_cudart()
        gpu = gpu_info(device_id)
        info = read_sidecar(path)
        if info.get(ENGINE_KEY):
            check_engine_target(path, info[ENGINE_KEY], gpu, trt.__version__)
        self.path, self.device_id = path, device_id
        check(self._cudart.cudaSetDevice(device_id))
        runtime: trt.Runtime = trt.Runtime(trt_logger(trt))
        engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise S4SError(f"TensorRT {trt.__version__} could not load {path} (see its log above): engines only run "
                           "with the TensorRT version and GPU they were built for; "
                           "rebuild it with `s4s-export build --trt`")
        self._runtime, self._engine = runtime, engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            spec = TensorSpec(name, np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                              tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(name)))
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        self.spec: GraphSpec = check_graph(path, inputs, outputs, info)
        if self.spec.noise.shape[0] is None:
            low, _, high = engine.get_tensor_profile_shape(NOISE, 0)
            self.spec.batch_range = (int(low[0]), int(high[0]))
        if max_batch is not None:
            self.spec.limit_batch(max_batch)
        lo, hi = self.spec.batch_range
        if cuda_graph_batch is not None and not lo <= cuda_graph_batch <= hi:
            capped = " capped by max_batch" if max_batch is not None else ""
            raise S4SError(f"cuda_graph_batch {cuda_graph_batch} is outside the batch range [{lo}, {hi}] (the engine's "
                           f"profile{capped}); pick a batch in that range")
        self.cuda_graph_batch = cuda_graph_batch
        self._graphs_failed = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._states: list[_ThreadState] = []  # every thread's, so close() can free them all

    @property
    def graphs_enabled(self) -> bool:
        return self.cuda_graph_batch is not None and not self._graphs_failed

    kind = "engine"

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One execution on this thread's context; `feeds` hold every input, at one batch within `spec.batch_range`."""
        if set(feeds) != set(self.spec.inputs):
            raise S4SError(f"feeds {sorted(feeds)} do not match the engine's inputs {sorted(self.spec.inputs)}")
        batch, (lo, hi) = int(np.shape(feeds[NOISE])[0]) if np.ndim(feeds[NOISE]) else 0, self.spec.batch_range
        if not lo <= batch <= hi:
            raise S4SError(f"batch {batch} is outside this engine's batch range [{lo}, {hi}]; split the request "
                           "(Sampler does) or rebuild the engine with a wider range")
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState(self)
            with self._lock:
                self._states.append(state)
        return state.run(feeds, batch)

    def _release(self) -> None:
        """Free every thread's CUDA graph, stream and buffers, then the engine (runs must have finished)."""
        with self._lock:
            states, self._states = self._states, []
        for state in states:
            state.close()
        self._local = threading.local()
        self._engine = self._runtime = None

    def _capture_failed(self, batch: int, error: Exception) -> None:
        """Turn CUDA graphs off for this runner, warning once."""
        with self._lock:
            first, self._graphs_failed = not self._graphs_failed, True
        if first:
            log.warning("CUDA graph capture at batch %d failed for %s (%s); running without CUDA graphs", batch,
                        self.path, error)


class _ThreadState:
    """One thread's stream, device buffers and execution contexts, and the CUDA graph at `cuda_graph_batch`."""

    def __init__(self, runner: TrtRunner):
        self.runner, cudart, spec = runner, runner._cudart, runner.spec
        check(cudart.cudaSetDevice(runner.device_id))
        self.stream = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        self.graph = self.graph_exec = self.graph_context = None
        self.dynamic = [name for name, t in spec.inputs.items() if None in t.shape]
        self.batch = spec.batch_range[1]
        context = self.context = self._new_context(self.batch)  # every buffer sized for the largest batch
        self.buffers = {name: DeviceBuffer(_nbytes(t.dtype, context.get_tensor_shape(name)))
                        for name, t in [*spec.inputs.items(), (spec.output.name, spec.output)]}
        self._bind(context)

    def _new_context(self, batch: int) -> trt.IExecutionContext:
        engine: trt.ICudaEngine = self.runner._engine
        context: trt.IExecutionContext = engine.create_execution_context()
        if context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self._set_batch(context, batch)
        return context

    def _set_batch(self, context: trt.IExecutionContext, batch: int) -> None:
        for name in self.dynamic:
            shape = (batch, *self.runner.spec.inputs[name].shape[1:])
            if not context.set_input_shape(name, shape):
                raise RuntimeError(f"TensorRT refused input shape {shape} for {name}")

    def _bind(self, context: trt.IExecutionContext) -> None:
        for name, buffer in self.buffers.items():
            if not context.set_tensor_address(name, buffer.ptr):
                raise RuntimeError(f"TensorRT refused the device address of {name}")

    def run(self, feeds: dict[str, np.ndarray], batch: int) -> np.ndarray:
        runner, cudart = self.runner, self.runner._cudart
        check(cudart.cudaSetDevice(runner.device_id))
        graphed = batch == runner.cuda_graph_batch and runner.graphs_enabled
        if graphed:
            if self.graph_context is None:
                self.graph_context = self._new_context(batch)
                self._bind(self.graph_context)
            context = self.graph_context
        else:
            if self.graph_context is not None and not runner.graphs_enabled:
                self._drop_graph()
            if batch != self.batch:
                self._set_batch(self.context, batch)
                self.batch = batch
            context = self.context
        staged = self._copy_in(context, feeds)  # kept alive until the stream is synchronized
        if graphed and self.graph_exec is not None:
            check(cudart.cudaGraphLaunch(self.graph_exec, self.stream))
        else:
            if not context.execute_async_v3(int(self.stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed (see its log above)")
            if graphed:
                self._capture(context, batch)
        output = runner.spec.output
        out = np.empty(tuple(int(d) for d in context.get_tensor_shape(output.name)), dtype=output.dtype)
        check(cudart.cudaMemcpyAsync(out.ctypes.data, self.buffers[output.name].ptr, out.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        check(cudart.cudaStreamSynchronize(self.stream))
        del staged
        return out

    def _copy_in(self, context: trt.IExecutionContext, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Each feed cast to its engine tensor's dtype, shape-checked, and copied into its buffer."""
        cudart, staged = self.runner._cudart, []
        for name, value in feeds.items():
            tensor = self.runner.spec.inputs[name]
            array = np.asarray(value, dtype=tensor.dtype, order="C")
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if array.shape != shape:
                raise S4SError(f"input {name} has shape {list(array.shape)} ({array.nbytes} bytes); the engine expects "
                               f"{list(shape)} {tensor.dtype} ({_nbytes(tensor.dtype, shape)} bytes)")
            check(cudart.cudaMemcpyAsync(self.buffers[name].ptr, array.ctypes.data, array.nbytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
            staged.append(array)
        return staged

    def _capture(self, context: trt.IExecutionContext, batch: int) -> None:
        """Record one enqueue as a CUDA graph (the enqueue just run was the warm-up); on failure, graphs go off."""
        cudart, graph = self.runner._cudart, None
        try:
            check(cudart.cudaStreamBeginCapture(self.stream,
                                                cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            try:
                enqueued = context.execute_async_v3(int(self.stream))
            finally:
                graph = check(cudart.cudaStreamEndCapture(self.stream))
            if not enqueued:
                raise RuntimeError("TensorRT execute_async_v3 failed during the capture")
            self.graph_exec = check(cudart.cudaGraphInstantiate(graph, 0))
            self.graph = graph
        except RuntimeError as e:
            if graph is not None:
                cudart.cudaGraphDestroy(graph)
            self._drop_graph()
            self.runner._capture_failed(batch, e)

    def _drop_graph(self) -> None:
        cudart = self.runner._cudart
        if self.graph_exec is not None:
            check(cudart.cudaGraphExecDestroy(self.graph_exec))
        if self.graph is not None:
            check(cudart.cudaGraphDestroy(self.graph))
        self.graph = self.graph_exec = self.graph_context = None

    def close(self) -> None:
        """Destroy the CUDA graph and stream and free the device buffers."""
        self._drop_graph()
        self.context = None
        check(self.runner._cudart.cudaStreamDestroy(self.stream))
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers = {}


def _nbytes(dtype: np.dtype, shape) -> int:
    return int(np.prod([int(d) for d in shape], dtype=np.int64)) * dtype.itemsize
