"""Fixtures for the runtime tests: tiny graphs exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_helpers import NUM_CLASSES, export_tiny
from tensorrt_double import TensorRTDouble


@pytest.fixture(scope="session")
def graphs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("graphs")
    return {"uncond": export_tiny(d / "uncond.onnx"),
            "cond": export_tiny(d / "cond.onnx", num_classes=NUM_CLASSES),  # guidance_scale [], the older form
            "cond_per_sample": export_tiny(d / "cond_per_sample.onnx", num_classes=NUM_CLASSES, per_sample=True),
            "uint8": export_tiny(d / "uint8.onnx", uint8=True),
            "fixed2": export_tiny(d / "fixed2.onnx", batch=2)}


@pytest.fixture
def double(monkeypatch, tmp_path) -> TensorRTDouble:
    """The TensorRT / cudart test double installed as `tensorrt` and `cuda.bindings.runtime`, with its own cache."""
    fake = TensorRTDouble()
    fake.install(monkeypatch)
    monkeypatch.setenv("S4S_CACHE", str(tmp_path / "cache"))
    return fake
