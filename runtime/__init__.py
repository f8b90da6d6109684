"""Torch-free serving runtime: numpy plus onnxruntime or TensorRT.

    from s4s_export.runtime import Sampler
    with Sampler.load("sampler.onnx") as sampler:
        images = sampler(seed=0, n=16)

Nothing here imports torch, nor any s4s_export module above the torch-free base (tests/test_layering.py
checks it); TensorRT, cuda-python and onnx are imported only when used.
"""

from .images import make_grid, png_bytes, to_uint8, write_png
from .noise import seeded_labels, seeded_noise
from .onnxruntime_runner import OrtRunner
from .runner import Runner
from .sampler import Sampler
from .tensorrt_build import TrtBuildConfig, build_engine
from .tensorrt_runner import TrtRunner
from .triton import write_triton_repository

__all__ = ["OrtRunner", "Runner", "Sampler", "TrtBuildConfig", "TrtRunner", "build_engine", "make_grid", "png_bytes",
           "seeded_labels", "seeded_noise", "to_uint8", "write_png", "write_triton_repository"]
