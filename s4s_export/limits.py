"""Bounds on sizes and numbers, checked when options are parsed: one home for every limit (torch-free).

Sizes are bounded by what this machine can hold (its available memory); the messages state the bound.
"""

from __future__ import annotations

import contextlib
import math
import os

from .errors import S4SError

SEED_MAX = 2**64 - 1  # the Philox key is one 64-bit word (s4s_export/noise.py)
GUIDANCE_MAX = 100.0  # |guidance scale|: past this a float32 graph's outputs overflow or are noise
GRAPH_NFE_MAX = 64  # a baked graph unrolls one network call per evaluation (about 1.5 s of export each on CPU)
SOLVER_NFE_MAX = 1000  # eval and learn run solvers step by step; beyond this a step count is a typo
LABEL_MAX = 2**63 - 1  # labels are int64 graph inputs


def available_memory() -> int:
    """Bytes this process can still allocate: MemAvailable from /proc/meminfo, else free physical pages."""
    with contextlib.suppress(OSError):  # not Linux: fall back to free physical pages
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(count: int, bytes_each: int, what: str, unit: str, fix: str) -> int:
    """`count` items of `bytes_each` bytes must fit in half the available memory; S4SError states the bound."""
    budget = available_memory() // 2
    limit = max(1, budget // max(1, bytes_each))
    if count > limit:
        raise S4SError(f"{what} {count} needs {_gib(count * bytes_each)} for its {unit}, more than this machine can "
                       f"hold ({_gib(budget)}, half the available memory): use at most {limit}; {fix}")
    return count


def check_finite(value: float, what: str, lo: float | None = None, hi: float | None = None,
                 positive: bool = False) -> float:
    """A finite number (in [lo, hi], and > 0 with `positive`), else an S4SError naming the range."""
    bad = not math.isfinite(value) or (positive and value <= 0) or (lo is not None and value < lo) \
        or (hi is not None and value > hi)
    if bad:
        want = "a positive number" if positive else "a finite number"
        if lo is not None or hi is not None:
            want += f" in [{'-inf' if lo is None else lo:g}, {'inf' if hi is None else hi:g}]"
        raise S4SError(f"{what} must be {want}; got {value!r}")
    return value


def check_guidance(scale: float, what: str = "--guidance-scale") -> float:
    return check_finite(scale, what, -GUIDANCE_MAX, GUIDANCE_MAX)
