"""Fixtures for the export tests: tiny random EDM SongUNets registered as models, graphs built once per session."""

from __future__ import annotations

import pytest
from export_nets import NUM_CLASSES, tiny_net

from s4s_export import models
from s4s_export.export.build import BuildRequest, build_onnx


@pytest.fixture(scope="session", autouse=True)
def tiny_models():
    """Register `tiny` (unconditional) and `tiny-cond` (NUM_CLASSES classes) for --model, and `tiny-preset`,
    a checkpoint preset whose `--random-weights` twin is named `tiny-preset-twin` (as presets name theirs)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, labels in (("tiny", 0), ("tiny-cond", NUM_CLASSES)):
            mp.setitem(models.MODELS, name, models.ModelSpec(
                name, "test network", "1x8x8", "class" if labels else "none",
                lambda labels=labels, name=name: tiny_net(labels, name), lambda: True))
        mp.setitem(models.MODELS, "tiny-preset", models.ModelSpec(
            "tiny-preset", "test preset", "1x8x8", "none",
            lambda checkpoint=None, random_weights=False: tiny_net(0, "tiny-preset-twin" if random_weights else
                                                                   "tiny-preset"),
            lambda: True, accepts_checkpoint=True))
        yield


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """build(name, **request fields) -> BuildResult, cached per argument set for the whole session."""
    cache = {}
    root = tmp_path_factory.mktemp("graphs")

    def build(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            out = root / f"g{len(cache)}"
            cache[key] = build_onnx(BuildRequest(out=str(out), **kwargs))
        return cache[key]

    return build
