"""Torch-free serving runtime: numpy plus onnxruntime or TensorRT."""
