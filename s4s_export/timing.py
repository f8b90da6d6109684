"""Timing and machine description shared by `s4s-export bench`, benchmarks/gpu.py and benchmarks/quality.py.

Times are medians over repeats after warm-up calls; several functions timed "side by side" run in
interleaved rounds (A, B, C, A, B, C, ...) so that load changes on a shared machine hit them alike.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int | None = None) -> dict:
    """What ran the measurement: CPU, cores, GPU, library versions, UTC date."""
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if threads is not None:
        info["threads"] = threads
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def describe_machine(m: dict) -> str:
    """One line: `2-core Intel Xeon ... (load 1.2), no GPU, torch 2.13, 2026-11-26 08:00 UTC`."""
    gpu = m["gpu"] or "no GPU"
    load = f" (load {m['load_average_1min']})" if m.get("load_average_1min") is not None else ""
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "onnxruntime") if m.get(k))
    return f"{m['cpu_cores']}-core {m['cpu']}{load}, {gpu}, {libs}, {m['date_utc']}"


def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                   sync: Callable[[], None] | None = None) -> dict[str, dict]:
    """Median, min and max milliseconds of each function, timed in interleaved rounds after warm-up."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    if sync:
        sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t), "repeats": len(t)}
            for name, t in times.items()}
