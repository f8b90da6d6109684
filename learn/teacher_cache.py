"""Teacher pairs (noise, teacher output), generated once and cached on disk (docs/learning.md).

Noise sample i depends only on (seed, i) (`s4s_export.noise`), so a cache keyed by (model
identity, teacher, seed) serves any count up to what it holds, and a larger request computes
only the missing tail. The file is safetensors with a JSON header, written atomically; one
that cannot be read or does not match is reported and rebuilt.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..conditioning import condition_labels
from ..denoiser import Denoiser
from ..fileio import atomic_write
from ..noise import noise_set
from ..teacher import TeacherSpec, run_teacher

log = logging.getLogger("s4s_export.learn")
FORMAT = "s4s-export.teacher-cache"
VERSION = 2  # 2: noise from the Philox definition (docs/runtime.md "Noise"); version-1 caches hold old-noise targets


@dataclass
class TeacherPairs:
    noise: torch.Tensor  # [n, C, H, W] float32, unit variance
    labels: torch.Tensor | None
    target: torch.Tensor  # teacher output for sigma_max * noise
    seed: int

    def __len__(self) -> int:
        return self.noise.shape[0]


def cache_path(cache_dir: Path, identity: str, teacher: TeacherSpec, seed: int, condition: str = "") -> Path:
    """`condition`: what else decides the targets (prompt embeddings, guidance; `conditioning.condition_tag`)."""
    tag = "reference" if teacher.is_reference else f"{teacher.solver}-{teacher.nfe}-{teacher.schedule}"
    cond = f"-{condition}" if condition else ""
    return Path(cache_dir) / f"{identity[:16]}-{tag}{cond}-seed{seed}.safetensors"


def _header(identity: str, teacher: TeacherSpec, seed: int, shape: tuple[int, ...], count: int) -> dict[str, str]:
    return {"format": FORMAT, "version": str(VERSION), "model_sha256": identity, "teacher": json.dumps(teacher.to_dict()),
            "seed": str(seed), "shape": json.dumps(list(shape)), "count": str(count)}


def _read(path: Path, expect: dict[str, str]) -> torch.Tensor:
    """The cached targets; ValueError naming what is wrong with the file."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        target = load_file(str(path))["target"]
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ValueError(f"unreadable ({type(e).__name__}: {e})") from None
    for key in ("format", "version", "model_sha256", "teacher", "seed", "shape"):
        if meta.get(key) != expect[key]:
            raise ValueError(f"header field {key!r} is {meta.get(key)!r}, expected {expect[key]!r}")
    shape = tuple(json.loads(expect["shape"]))
    if meta.get("count") != str(target.shape[0]) or tuple(target.shape[1:]) != shape:
        raise ValueError(f"holds a tensor of shape {tuple(target.shape)} for count {meta.get('count')}")
    if not torch.isfinite(target).all():
        raise ValueError("holds non-finite values")
    return target


def teacher_pairs(cache_dir: Path, denoiser: Denoiser, teacher: TeacherSpec, seed: int, count: int,
                  batch: int = 64, device: torch.device | str = "cpu", what: str = "teacher",
                  held_out: bool = False, condition: str = "") -> TeacherPairs:
    """`count` teacher pairs for samples 0..count-1 of noise seed `seed`, from the cache where it has them.

    `held_out`: labels or prompts from the held-out split (`conditioning.condition_labels`);
    `condition`: the conditioning's tag in the cache key (`conditioning.condition_tag`).
    """
    info = denoiser.info
    identity = denoiser.identity()
    path = cache_path(cache_dir, identity, teacher, seed, condition)
    header = _header(identity, teacher, seed, info.shape, 0)
    cached = None
    if path.exists():
        try:
            cached = _read(path, header)
        except ValueError as e:
            log.warning("teacher cache %s is corrupt or stale: %s; rebuilding it", path, e)
            path.unlink()
    have = 0 if cached is None else cached.shape[0]
    noise = noise_set(info.shape, count, seed)
    labels = condition_labels(denoiser, count, seed, held_out)
    if have >= count:
        log.info("%s: %d pairs from the cache %s", what, count, path.name)
        return TeacherPairs(noise, labels, cached[:count], seed)
    log.info("%s: generating %d pairs with %s (%d cached)", what, count - have, teacher.label(), have)
    dev = torch.device("cpu") if teacher.is_reference else torch.device(device)
    tail_labels = None if labels is None else labels[have:].to(dev)
    tail = run_teacher(denoiser.to(dev), teacher, noise[have:].to(dev), tail_labels, batch, desc=f"{what} targets").cpu()
    target = tail if cached is None else torch.cat([cached, tail.to(cached.dtype)])
    header["count"] = str(count)
    atomic_write(path, lambda p: save_file({"target": target.contiguous()}, str(p), metadata=header))
    return TeacherPairs(noise, labels, target, seed)
