"""CUDA through cuda-python (`cuda.bindings.runtime`, no torch): the GPU check, device buffers, errors."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from types import ModuleType

from ..errors import S4SError


def import_cudart() -> ModuleType:
    """`cuda.bindings.runtime`, or an S4SError saying how to install it."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as e:
        raise S4SError(f"TensorRT execution needs cuda-python for device memory ({e}); "
                       "install it with `pip install cuda-bindings`") from None
    return cudart


def check(result: tuple):
    """Unpack a cuda-python `(err, *values)` result; raise RuntimeError naming the CUDA error."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else tuple(values) or None


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for or run on."""

    name: str
    compute_capability: str  # "9.0"


def gpu_info(device_id: int = 0) -> GpuInfo:
    """Name and compute capability of a usable CUDA GPU, or an S4SError saying what is missing."""
    cudart = import_cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or not count:
        reason = getattr(err, "name", err) if int(err) != 0 else "no devices"
        raise S4SError(f"no usable NVIDIA GPU here ({reason}); TensorRT needs an NVIDIA GPU with its driver. "
                       "Without one, run the .onnx with onnxruntime (Sampler.load('model.onnx'))")
    if not 0 <= device_id < count:
        raise S4SError(f"GPU {device_id} does not exist; this machine has {count} (ids 0..{count - 1})")
    props = check(cudart.cudaGetDeviceProperties(device_id))
    name = props.name.decode(errors="replace").split("\x00")[0] if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name, f"{props.major}.{props.minor}")


class DeviceBuffer:
    """`nbytes` of device memory on the current device, freed by `free()` or when the object goes."""

    def __init__(self, nbytes: int):
        cudart = import_cudart()
        self.nbytes = max(int(nbytes), 1)
        self.ptr: int = int(check(cudart.cudaMalloc(self.nbytes)))
        self._free = weakref.finalize(self, cudart.cudaFree, self.ptr)

    def free(self) -> None:
        """Free the memory now (idempotent); otherwise it is freed when the object goes."""
        self._free()
