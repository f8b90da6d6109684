"""The built-in demo model: a small EDMPrecond(SongUNet) trained on sklearn digits (16x16, 1 channel).

The weights (EMA) live in `s4s_export/assets/demo.safetensors`; its metadata header holds the
network's class name and init kwargs ("network") and the training record ("training") as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import S4SError
from ..paths import DEMO_ASSET
from . import build_network
from .precond import EDMPrecond

TRAIN_COMMAND = "python scripts/train_demo.py"


def demo_metadata(path: Path | str = DEMO_ASSET) -> dict:
    """The asset's metadata: {'network': {...}, 'training': {...}, 'format': str}."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise S4SError(f"demo model weights not found at {path}; create them with: {TRAIN_COMMAND}")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    try:
        return {k: json.loads(v) if k in ("network", "training") else v for k, v in meta.items()}
    except json.JSONDecodeError as e:
        raise S4SError(f"demo model metadata in {path} is not valid JSON ({e}); recreate it with: {TRAIN_COMMAND}")


def load_demo(path: Path | str = DEMO_ASSET) -> EDMPrecond:
    """Build the demo denoiser from the asset: eval mode, no gradients, ModelInfo name 'demo'."""
    from safetensors.torch import load_file

    meta = demo_metadata(path)
    spec = meta.get("network") or {}
    if spec.get("class_name") != "EDMPrecond":
        raise S4SError(f"{path} does not describe an EDMPrecond network; recreate it with: {TRAIN_COMMAND}")
    net = build_network("EDMPrecond", **spec["init_kwargs"], name="demo")
    net.load_state_dict(load_file(str(path)), strict=True)
    net.info = dataclasses.replace(
        net.info, description="built-in demo: EDM SongUNet trained on sklearn digits (16x16, 1 channel)")
    return net.eval().requires_grad_(False)
