"""`Runner`: the interface Sampler drives, shared by OrtRunner (onnxruntime) and TrtRunner (TensorRT).

Shaped like Polygraphy's runners: a runner is ready once made, `infer(feeds)` runs one batch, `close()`
releases its sessions, engines and device memory (idempotent), and `with` closes it on exit. Inferring
on a closed runner is an S4SError.
"""

from __future__ import annotations

import abc
import contextlib
from pathlib import Path

import numpy as np

from ..errors import S4SError
from .spec import GraphSpec


class Runner(abc.ABC):
    """A loaded graph or engine: `spec` describes it, `infer(feeds)` returns the output as numpy.

    Subclasses set `path`, `spec` and `kind` ("graph" or "engine", for messages) and implement
    `_infer` and `_release`.
    """

    path: Path
    spec: GraphSpec
    kind = "graph"
    _closed = False

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One run: `feeds` hold every input, at one batch within `spec.batch_range`."""
        if self._closed:
            raise S4SError(f"the runner for {self.path} is closed; load the {self.kind} again")
        return self._infer(feeds)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release what the runner holds; later calls do nothing."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        """A runner nobody closed is closed when collected (at interpreter exit CUDA may already be gone)."""
        with contextlib.suppress(Exception):
            self.close()

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run one batch (the runner is open)."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free sessions, engines and device memory (called once, by `close`)."""
