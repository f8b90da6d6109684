"""Seeded noise: sample i of a set depends only on (seed, i), so prefixes of a set agree."""

from __future__ import annotations

import torch

TRAIN_SEED = 0
VALIDATION_SEED = 1_000_000  # held-out noise for validation and eval; never used for training


def noise_set(shape: tuple[int, ...], n: int, seed: int, start: int = 0) -> torch.Tensor:
    """float32 standard normal noise [n, *shape]; sample i uses the generator seeded with seed + start + i."""
    out = torch.empty((n, *shape), dtype=torch.float32)
    g = torch.Generator()
    for i in range(n):
        g.manual_seed(seed + start + i)
        out[i] = torch.randn(shape, generator=g, dtype=torch.float32)
    return out


def label_set(num_classes: int, n: int, seed: int) -> torch.Tensor | None:
    """Class labels for a noise set (None for unconditional models): a seeded permutation cycle."""
    if num_classes <= 0:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, (n,), generator=g, dtype=torch.int64)
