"""s4s-export: learned few-step diffusion solvers baked into one ONNX graph.

The package root stays light: `s4s_export.runtime` must import without torch.
"""

__version__ = "0.1.0"
