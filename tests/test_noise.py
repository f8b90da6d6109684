"""The one noise definition (s4s_export/noise.py): Philox4x64-10 against Random123's answers and numpy's own
Philox, the (seed, sample) layout, the float32 normals, labels, and the torch wrappers eval/learn use."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.noise import (
    LABEL_DOMAIN,
    NOISE_DOMAIN,
    class_labels,
    label_set,
    noise_set,
    normal_noise,
    philox4x64,
    uniform,
)
from s4s_export.runtime import seeded_labels, seeded_noise

# Random123 1.09 examples/kat_vectors: philox4x64 10 <counter 4 words> <key 2 words> <output 4 words>.
KAT = [
    ("0000000000000000 0000000000000000 0000000000000000 0000000000000000", "0000000000000000 0000000000000000",
     "16554d9eca36314c db20fe9d672d0fdc d7e772cee186176b 7e68b68aec7ba23b"),
    ("ffffffffffffffff ffffffffffffffff ffffffffffffffff ffffffffffffffff", "ffffffffffffffff ffffffffffffffff",
     "87b092c3013fe90b 438c3c67be8d0224 9cc7d7c69cd777b6 a09caebf594f0ba0"),
    ("243f6a8885a308d3 13198a2e03707344 a4093822299f31d0 082efa98ec4e6c89", "452821e638d01377 be5466cf34e90c6c",
     "a528f45403e61d95 38c72dbd566e9788 a5a1610e72fd18b5 57bd43b5e52b7fe6"),
]


def _words(text: str) -> list[int]:
    return [int(w, 16) for w in text.split()]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_matches_random123_known_answers(counter, key, expected):
    out = philox4x64(np.array(_words(counter), dtype=np.uint64), tuple(_words(key)))
    assert [int(w) for w in out] == _words(expected)


@pytest.mark.parametrize("seed", [0, 1, 1_000_000, 2**64 - 1])
def test_noise_words_are_numpys_philox_stream(seed):
    """numpy's Philox (an independent implementation) with key (seed, 0) gives the words of our counters.

    numpy increments its counter before each block, so counter (j - 1, i, domain, 0) yields our block j."""
    for i, domain in ((0, NOISE_DOMAIN), (7, NOISE_DOMAIN), (2**40 + 3, NOISE_DOMAIN), (5, LABEL_DOMAIN)):
        blocks = 6
        counters = np.zeros((blocks, 4), dtype=np.uint64)
        counters[:, 0], counters[:, 1], counters[:, 2] = np.arange(1, blocks + 1), i, domain
        ours = philox4x64(counters, (seed, 0)).reshape(-1)
        theirs = np.random.Philox(counter=np.array([0, i, domain, 0], dtype=np.uint64),
                                   key=np.array([seed, 0], dtype=np.uint64)).random_raw(4 * blocks)
        np.testing.assert_array_equal(ours, theirs)


def test_normals_follow_the_documented_formula():
    """Element 4j+q of sample i: Box-Muller of block j's words in float64, rounded to float32 (docs/runtime.md)."""
    seed, i, shape = 42, 3, (2, 3, 5)  # 30 values: the last block is cut to 2
    x = normal_noise(shape, 1, seed, start=i)[0].reshape(-1)
    for j in range(8):
        w = philox4x64(np.array([j, i, NOISE_DOMAIN, 0], dtype=np.uint64), (seed, 0))
        for p in range(2):
            u1, u2 = (((int(w[2 * p + k]) >> 12) + 0.5) / 2**52 for k in range(2))
            r, t = np.sqrt(-2.0 * np.log(u1)), 2 * np.pi * u2
            for k, z in enumerate((r * np.cos(t), r * np.sin(t))):
                if 4 * j + 2 * p + k < x.size:
                    assert x[4 * j + 2 * p + k] == np.float32(z)


def test_uniform_is_exact_open_and_never_zero():
    w = np.array([0, 1, 4095, 4096, 2**63, 2**64 - 1], dtype=np.uint64)
    u = uniform(w)
    assert u[0] == u[2] == 0.5 / 2**52 and u[3] == 1.5 / 2**52 and u[4] == 0.5 + 0.5 / 2**52
    assert u[-1] == 1 - 0.5 / 2**52 and np.all((u > 0) & (u < 1))


def test_sample_i_depends_only_on_seed_and_i():
    shape = (3, 7, 5)
    full = normal_noise(shape, 9, seed=11)
    np.testing.assert_array_equal(normal_noise(shape, 4, seed=11, start=5), full[5:])
    np.testing.assert_array_equal(normal_noise(shape, 3, seed=11), full[:3])
    other = normal_noise(shape, 9, seed=12)
    assert not np.any(other == full)  # another seed shares no value (overlapping streams would)
    assert not np.any(normal_noise(shape, 1, seed=11, start=1)[0] == full[0])
    assert full.dtype == np.float32 and full.shape == (9, *shape)


def test_noise_is_standard_normal():
    x = normal_noise((4096,), 64, seed=5).astype(np.float64).reshape(-1)  # 262144 values
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert abs(np.mean(x**3)) < 0.03 and abs(np.mean(x**4) - 3) < 0.06
    for z, p in ((-1.0, 0.158655), (0.0, 0.5), (1.96, 0.975002)):  # normal CDF at a few points
        assert abs(np.mean(x < z) - p) < 0.003
    assert np.all(np.isfinite(x)) and np.abs(x).max() < 8.6  # |z| <= sqrt(-2 log 2^-53)


def test_labels_are_per_sample_uniform_and_their_own_domain():
    labels = class_labels(10, 5000, seed=3)
    assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
    assert np.all(np.abs(np.bincount(labels, minlength=10) - 500) < 100)
    np.testing.assert_array_equal(class_labels(10, 20, seed=3, start=100), labels[100:120])
    w0 = philox4x64(np.array([0, 7, LABEL_DOMAIN, 0], dtype=np.uint64), (3, 0))[0]
    assert labels[7] == int(w0) % 10
    assert class_labels(0, 4, seed=3) is None and label_set(0, 4, 3) is None


def test_torch_wrappers_and_runtime_give_the_same_bits():
    """eval/learn (noise_set, label_set) and the Python runtime (seeded_noise, seeded_labels): one stream."""
    t = noise_set((3, 4, 4), 6, 1_000_000, start=2)
    assert t.dtype == torch.float32 and t.shape == (6, 3, 4, 4)
    np.testing.assert_array_equal(t.numpy().view(np.uint32), seeded_noise((3, 4, 4), 6, 1_000_000, 2).view(np.uint32))
    labels = label_set(10, 6, 1_000_000)
    assert labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), seeded_labels(10, 6, 1_000_000))


def test_large_sets_are_generated_in_chunks_with_the_same_values(monkeypatch):
    import s4s_export.noise as noise

    whole = normal_noise((3, 5), 40, seed=9)
    monkeypatch.setattr(noise, "_CHUNK", 32)  # 2 samples a chunk
    np.testing.assert_array_equal(normal_noise((3, 5), 40, seed=9), whole)


@pytest.mark.parametrize("kwargs,words", [
    ({"seed": -1}, "seed must be an integer in [0, 2**64)"),
    ({"seed": 2**64}, "seed must be an integer in [0, 2**64)"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"start": -2}, "start must be an integer"),
    ({"start": 2**64 - 1, "n": 2}, "exceed the 2**64 sample indices"),
])
def test_bad_seeds_are_one_line_errors(kwargs, words):
    args = {"shape": (2,), "n": 1, "seed": 0, **kwargs}
    with pytest.raises(S4SError) as e:
        normal_noise(**args)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_base_noise_imports_no_torch():
    code = ("import sys; import s4s_export.noise as n; n.normal_noise((2,), 1, 0); n.class_labels(3, 2, 0); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
