"""Seeded noise, one definition for every runtime: Philox4x64-10 keyed by the seed, counted by sample index.

Sample i of a set depends only on (seed, i), so prefixes of a set agree and a sample's noise is the same
in eval, learn, the Python runtime, the C++ runtime (runtime/cpp/src/noise.cpp) and the Triton example.
The exact definition, for reimplementations, is in docs/runtime.md ("Noise"):

- key (k0, k1) = (seed, 0), seed in [0, 2**64); counter (c0, c1, c2, c3) = (block j, sample i, domain, 0);
  domain 0 is image noise, 1 class labels.
- noise: element 4j + q (C order over the sample's shape) comes from the words (w0, w1, w2, w3) of block j:
  u(w) = ((w >> 12) + 0.5) * 2**-52 in (0, 1); pairs (w0, w1) -> elements 4j, 4j+1 and (w2, w3) -> 4j+2, 4j+3
  by Box-Muller in float64, r = sqrt(-2 log u(a)), t = 2pi * u(b): (r cos t, r sin t), then rounded to float32.
- labels: label of sample i = w0 mod num_classes of block (0, i, 1, 0).

This module is numpy only (the runtime imports it); `noise_set` / `label_set` wrap it in torch tensors
for eval and learn, importing torch when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import S4SError

if TYPE_CHECKING:
    import torch

TRAIN_SEED = 0
VALIDATION_SEED = 1_000_000  # held-out noise for validation and eval; never used for training

NOISE_DOMAIN, LABEL_DOMAIN = 0, 1
_M0, _M1 = np.uint64(0xD2E7470EE14C6C93), np.uint64(0xCA5A826395121157)  # Random123 Philox4x64 multipliers
_W0, _W1 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBB67AE8584CAA73B)  # Random123 Philox4x64 Weyl key bumps
_LOW32, _S32 = np.uint64(0xFFFFFFFF), np.uint64(32)
_CHUNK = 1 << 16  # values generated at a time: temporaries stay in cache (2x faster than 1 << 20 here)


def _mulhilo(a: np.uint64, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) 64-bit halves of the 128-bit product a * b, from 32-bit pieces."""
    a_lo, a_hi, b_lo, b_hi = a & _LOW32, a >> _S32, b & _LOW32, b >> _S32
    ll, lh, hl, hh = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (ll >> _S32) + (lh & _LOW32) + (hl & _LOW32)
    return hh + (lh >> _S32) + (hl >> _S32) + (mid >> _S32), a * b


def philox4x64(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x64-10 (Salmon et al. 2011, Random123): counters [..., 4] uint64 -> words [..., 4] uint64."""
    c = np.asarray(counter, dtype=np.uint64)
    c0, c1, c2, c3 = (c[..., q].copy() for q in range(4))
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    with np.errstate(over="ignore"):
        for r in range(10):
            if r:
                k0, k1 = k0 + _W0, k1 + _W1
            hi0, lo0 = _mulhilo(_M0, c0)
            hi1, lo1 = _mulhilo(_M1, c2)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3], axis=-1)


def _counters(blocks: int, samples: np.ndarray, domain: int) -> np.ndarray:
    """[len(samples), blocks, 4] counters (j, i, domain, 0)."""
    c = np.zeros((samples.size, blocks, 4), dtype=np.uint64)
    c[..., 0] = np.arange(blocks, dtype=np.uint64)
    c[..., 1] = samples[:, None]
    c[..., 2] = domain
    return c


def _check(seed: int, n: int, start: int) -> None:
    for name, value, top in (("seed", seed, 2**64), ("start", start, 2**64), ("n", n, 2**64)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < top:
            raise S4SError(f"noise {name} must be an integer in [0, 2**64); got {value!r}")
    if int(start) + int(n) > 2**64:
        raise S4SError(f"noise samples {start}..{start + n - 1} exceed the 2**64 sample indices of a seed; lower start")


def uniform(words: np.ndarray) -> np.ndarray:
    """float64 in (0, 1), exact: ((w >> 12) + 0.5) * 2**-52; never 0, so its log is finite."""
    return ((words >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52


def normal_noise(shape: tuple[int, ...], n: int, seed: int, start: int = 0) -> np.ndarray:
    """float32 standard normal noise [n, *shape]; sample i is the Philox stream of (seed, start + i)."""
    _check(seed, n, start)
    size = int(np.prod(shape, dtype=np.int64))
    blocks = -(-size // 4)
    out = np.empty((n, blocks * 4), dtype=np.float32)
    step = max(1, _CHUNK // max(1, blocks * 4))
    for first in range(0, n, step):
        samples = np.arange(first, min(n, first + step), dtype=np.uint64) + np.uint64(start)
        w = philox4x64(_counters(blocks, samples, NOISE_DOMAIN), (int(seed), 0))
        u = uniform(w)
        r = np.sqrt(-2.0 * np.log(u[..., 0::2]))
        t = (2.0 * np.pi) * u[..., 1::2]
        z = np.empty(u.shape, dtype=np.float64)
        z[..., 0::2], z[..., 1::2] = r * np.cos(t), r * np.sin(t)
        out[first:first + samples.size] = z.reshape(samples.size, -1).astype(np.float32)
    return out[:, :size].reshape((n, *shape))


def class_labels(num_classes: int, n: int, seed: int, start: int = 0) -> np.ndarray | None:
    """int64 labels [n] in [0, num_classes) (None for unconditional models); label i = w0 mod num_classes."""
    if num_classes <= 0:
        return None
    _check(seed, n, start)
    samples = np.arange(n, dtype=np.uint64) + np.uint64(start)
    w0 = philox4x64(_counters(1, samples, LABEL_DOMAIN), (int(seed), 0))[:, 0, 0]
    return (w0 % np.uint64(num_classes)).astype(np.int64)


def noise_set(shape: tuple[int, ...], n: int, seed: int, start: int = 0) -> torch.Tensor:
    """`normal_noise` as a torch tensor (eval and learn)."""
    import torch

    return torch.from_numpy(normal_noise(shape, n, seed, start))


def label_set(num_classes: int, n: int, seed: int, start: int = 0) -> torch.Tensor | None:
    """`class_labels` as a torch tensor, or None for unconditional models."""
    import torch

    labels = class_labels(num_classes, n, seed, start)
    return None if labels is None else torch.from_numpy(labels)
