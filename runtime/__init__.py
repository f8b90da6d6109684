"""Torch-free serving runtime: numpy plus onnxruntime or TensorRT.

    from s4s_export.runtime import Sampler
    images = Sampler.load("sampler.onnx")(seed=0, n=16)

Nothing here imports torch (tests check it); TensorRT, cuda-python and onnx are imported only when used.
"""

from .images import make_grid, png_bytes, to_uint8, write_png
from .noise import seeded_labels, seeded_noise
from .sampler import Sampler
from .tensorrt_build import build_engine
from .triton import write_triton_repository

__all__ = ["Sampler", "build_engine", "make_grid", "png_bytes", "seeded_labels", "seeded_noise", "to_uint8", "write_png",
           "write_triton_repository"]
