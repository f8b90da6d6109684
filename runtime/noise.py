"""Seeded noise from numpy: sample i of a set depends only on (seed, i), so prefixes of a set agree.

The stream is numpy's PCG64 seeded with the pair (seed, i). It is NOT bit-identical to the
training-side noise of `s4s_export.noise` (torch's generator): the same seed gives other images
here than in `s4s-export eval`. Pass `noise=` explicitly to reproduce a torch-side result.
"""

from __future__ import annotations

import numpy as np


def seeded_noise(shape: tuple[int, ...], n: int, seed: int, start: int = 0) -> np.ndarray:
    """float32 standard normal noise [n, *shape]; sample i comes from `default_rng([seed, start + i])`."""
    out = np.empty((n, *shape), dtype=np.float32)
    for i in range(n):
        out[i] = np.random.default_rng([seed, start + i]).standard_normal(shape, dtype=np.float32)
    return out


def fresh_seed() -> int:
    """A seed from OS entropy, for calls that give neither noise nor seed."""
    return int(np.random.SeedSequence().entropy % (2**63))
