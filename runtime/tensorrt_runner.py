"""Run a TensorRT engine with execute_async_v3 on device buffers from cuda-python (no torch).

The engine is shared; each thread gets its own execution context, stream and buffers (sized for the
profile's maximum batch), since a context must not run in two threads at once. With `cuda_graph_batch`
the enqueue at that batch is captured once as a CUDA graph and replayed; a run at another batch
changes the context's shapes, so the graph is captured again the next time that batch comes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import S4SError
from .cuda import DeviceBuffer, check, gpu_info, import_cudart
from .spec import NOISE, GraphSpec, TensorSpec, check_graph, read_sidecar
from .tensorrt_build import check_engine_target, import_tensorrt

if TYPE_CHECKING:  # annotations only; the module is imported at run time by import_tensorrt()
    import tensorrt as trt


class TrtRunner:
    """A deserialized engine: `spec` describes it, `run(feeds)` returns the output as numpy."""

    def __init__(self, path: str | Path, device_id: int = 0, cuda_graph_batch: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise S4SError(f"{path} does not exist; build it with `s4s-export build --trt`")
        trt = self._trt = import_tensorrt()
        self._cudart = import_cudart()
        gpu = gpu_info(device_id)
        info = read_sidecar(path)
        if info.get("engine"):
            check_engine_target(path, info["engine"], gpu, trt.__version__)
        self.device_id = device_id
        check(self._cudart.cudaSetDevice(device_id))
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime: trt.Runtime = trt.Runtime(self._logger)
        engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise S4SError(f"TensorRT {trt.__version__} could not load {path} (see its log above): engines only run "
                           "with the TensorRT version and GPU they were built for; rebuild it with `s4s-export build --trt`")
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
        batch_range = self.spec.batch_range
        if cuda_graph_batch is not None and not batch_range[0] <= cuda_graph_batch <= batch_range[1]:
            raise S4SError(f"cuda_graph_batch {cuda_graph_batch} is outside the engine's batch range {list(batch_range)}")
        self.cuda_graph_batch = cuda_graph_batch
        self._local = threading.local()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One execution on this thread's context; `feeds` already checked against `spec`."""
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState(self)
        return state.run(feeds)


class _ThreadState:
    """One thread's execution context, stream, device buffers and (optionally) captured CUDA graph."""

    def __init__(self, runner: TrtRunner):
        self.runner, cudart, spec = runner, runner._cudart, runner.spec
        check(cudart.cudaSetDevice(runner.device_id))
        engine: trt.ICudaEngine = runner._engine
        context: trt.IExecutionContext = engine.create_execution_context()
        if context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self.engine, self.context = engine, context  # the engine must outlive its context
        self.stream = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        self.dynamic = [name for name, t in spec.inputs.items() if None in t.shape]
        self._set_batch(spec.batch_range[1])  # size every buffer for the largest batch
        self.buffers = {name: DeviceBuffer(_nbytes(t.dtype, context.get_tensor_shape(name)))
                        for name, t in [*spec.inputs.items(), (spec.output.name, spec.output)]}
        for name, buffer in self.buffers.items():
            if not context.set_tensor_address(name, buffer.ptr):
                raise RuntimeError(f"TensorRT refused the device address of {name}")
        self.graph = self.graph_exec = None

    def _set_batch(self, batch: int) -> None:
        context: trt.IExecutionContext = self.context
        for name in self.dynamic:
            shape = (batch, *self.runner.spec.inputs[name].shape[1:])
            if not context.set_input_shape(name, shape):
                raise RuntimeError(f"TensorRT refused input shape {shape} for {name}")
        self.batch = batch
        self.out_shape = tuple(int(d) for d in context.get_tensor_shape(self.runner.spec.output.name))

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        cudart = self.runner._cudart
        batch = feeds[NOISE].shape[0]
        if batch != self.batch:
            self._set_batch(batch)
            self._drop_graph()
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in feeds.items():
            check(cudart.cudaMemcpyAsync(self.buffers[name].ptr, array.ctypes.data, array.nbytes, h2d, self.stream))
        if batch == self.runner.cuda_graph_batch and self.graph_exec is not None:
            check(cudart.cudaGraphLaunch(self.graph_exec, self.stream))
        else:
            self._enqueue_or_raise()
            if batch == self.runner.cuda_graph_batch:
                self._capture()
        out = np.empty(self.out_shape, dtype=self.runner.spec.output.dtype)
        check(cudart.cudaMemcpyAsync(out.ctypes.data, self.buffers[self.runner.spec.output.name].ptr, out.nbytes, d2h,
                                     self.stream))
        check(cudart.cudaStreamSynchronize(self.stream))
        return out

    def _enqueue(self) -> bool:
        context: trt.IExecutionContext = self.context
        return context.execute_async_v3(int(self.stream))

    def _enqueue_or_raise(self) -> None:
        if not self._enqueue():
            raise RuntimeError("TensorRT execute_async_v3 failed (see its log above)")

    def _capture(self) -> None:
        """Record one enqueue as a CUDA graph; the enqueue just run served as the required warm-up."""
        cudart = self.runner._cudart
        check(cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        enqueued = self._enqueue()
        self.graph = check(cudart.cudaStreamEndCapture(self.stream))
        if not enqueued:
            check(cudart.cudaGraphDestroy(self.graph))
            self.graph = None
            raise RuntimeError("TensorRT execute_async_v3 failed during CUDA graph capture (see its log above)")
        self.graph_exec = check(cudart.cudaGraphInstantiate(self.graph, 0))

    def _drop_graph(self) -> None:
        cudart = self.runner._cudart
        if self.graph_exec is not None:
            check(cudart.cudaGraphExecDestroy(self.graph_exec))
        if self.graph is not None:
            check(cudart.cudaGraphDestroy(self.graph))
        self.graph = self.graph_exec = None

    def __del__(self):
        try:
            self._drop_graph()
            self.runner._cudart.cudaStreamDestroy(self.stream)
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass


def _nbytes(dtype: np.dtype, shape) -> int:
    return int(np.prod([int(d) for d in shape], dtype=np.int64)) * dtype.itemsize
