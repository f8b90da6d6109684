"""Fixtures shared by the family tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> Path:
    """A tiny random Stable-Diffusion-layout pipeline with a CLIP tokenizer, saved with save_pretrained
    (examples/families/tiny_diffusers.py; needs the diffusers extra: request it after importorskip)."""
    sys.path.insert(0, str(ROOT / "examples" / "families"))
    try:
        from tiny_diffusers import save_tiny_sd
    finally:
        sys.path.remove(str(ROOT / "examples" / "families"))
    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")
