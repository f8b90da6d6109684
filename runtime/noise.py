"""Seeded noise for the runtime: the one definition of `s4s_export.noise` (Philox4x64-10, docs/runtime.md "Noise").

Sample i depends only on (seed, i), and `--seed S` gives the same float32 noise bits here as in
`s4s-export eval`/`learn`, the C++ runtime and the Triton example.
"""

from __future__ import annotations

import numpy as np

from ..noise import class_labels as seeded_labels
from ..noise import normal_noise as seeded_noise

__all__ = ["fresh_seed", "seeded_labels", "seeded_noise"]


def fresh_seed() -> int:
    """A seed from OS entropy, for calls that give neither noise nor seed."""
    return int(np.random.SeedSequence().entropy % (2**63))
