"""Bake a fixed-NFE sampler into one ONNX graph: export module, precision, guidance, export, verification.

`inspect_onnx` needs only onnx; the build pipeline (`s4s_export.export.build.build_onnx`) imports torch.
"""

from .inspect import inspect_onnx

__all__ = ["inspect_onnx"]
