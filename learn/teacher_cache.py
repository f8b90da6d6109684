"""Teacher pairs (noise, teacher output), generated once and cached on disk (docs/learning.md).

Noise sample i depends only on (seed, i) (`s4s_export.noise`), so a cache keyed by (model
identity, teacher, seed) serves any count up to what it holds, and a larger request computes
only the missing tail. The file is safetensors with a JSON header, written atomically; one
that cannot be read or does not match is reported and rebuilt.

Missing pairs are generated in chunks of `batch` samples (boundaries on multiples of it), each
written atomically to `<cache>.parts/` as it finishes, then joined into the cache file: an
interrupted run resumes without recomputing finished chunks, and with several ranks chunk k is
computed on rank k mod world (learn/distributed.py). The chunks are the same for any number of
ranks and any interruption, so the targets are bit-identical to one uninterrupted process.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..conditioning import condition_labels
from ..denoiser import Denoiser
from ..errors import S4SError
from ..fileio import atomic_write
from ..noise import noise_set
from ..teacher import TeacherSpec, run_teacher
from .distributed import current

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
    return {"format": FORMAT, "version": str(VERSION), "model_sha256": identity,
            "teacher": json.dumps(teacher.to_dict()), "seed": str(seed), "shape": json.dumps(list(shape)),
            "count": str(count)}


def _read(path: Path, expect: dict[str, str]) -> torch.Tensor:
    """The cached targets; ValueError naming what is wrong with the file."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        target = load_file(str(path))["target"]
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ValueError(f"unreadable ({type(e).__name__}: {e})") from None
    for key in ("format", "version", "model_sha256", "teacher", "seed", "shape",
                *(("start",) if "start" in expect else ())):
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
    ranks = current()
    have = ranks.minimum(0 if cached is None else cached.shape[0], "teacher cache check")  # the same on every rank
    cached = None if have == 0 else cached[:have]
    noise = noise_set(info.shape, count, seed)
    labels = condition_labels(denoiser, count, seed, held_out)
    if have >= count:
        log.info("%s: %d pairs from the cache %s", what, count, path.name)
        return TeacherPairs(noise, labels, cached[:count], seed)
    spans = chunk_spans(have, count, batch)
    parts_dir = path.with_name(path.name.removesuffix(".safetensors") + ".parts")
    done = {k for k, (a, b) in enumerate(spans) if _part_target(parts_dir, header, a, b) is not None}
    log.info("%s: generating %d pairs with %s (%d cached, %d of %d chunks done)", what, count - have,
             teacher.label(), have, len(done), len(spans))
    dev = torch.device("cpu") if teacher.is_reference else torch.device(device)
    denoiser = denoiser.to(dev)
    mine = [k for k in ranks.owned(len(spans)) if k not in done]
    for k in mine:
        a, b = spans[k]
        cond = None if labels is None else labels[a:b].to(dev)
        part = run_teacher(denoiser, teacher, noise[a:b].to(dev), cond, b - a,
                           desc=f"{what} chunk {k + 1}/{len(spans)}").cpu()
        meta = {**header, "count": str(b - a), "start": str(a)}
        atomic_write(parts_dir / f"{a}-{b}.safetensors",
                     lambda p, t=part, m=meta: save_file({"target": t.contiguous()}, str(p), metadata=m))
    ranks.barrier("teacher generation")
    if ranks.is_main:
        tail = [_part_target(parts_dir, header, a, b) for a, b in spans]
        if any(t is None for t in tail):
            raise S4SError(f"teacher chunks in {parts_dir} vanished while this run was writing them; "
                           "is another learn run using this workspace? rerun")
        target = torch.cat(([] if cached is None else [cached]) + [t.to(tail[0].dtype) for t in tail])
        header["count"] = str(count)
        atomic_write(path, lambda p: save_file({"target": target.contiguous()}, str(p), metadata=header))
        shutil.rmtree(parts_dir, ignore_errors=True)
    ranks.barrier("teacher generation")
    if not ranks.is_main:
        header["count"] = str(count)
        target = _read(path, header)
    return TeacherPairs(noise, labels, target, seed)


def chunk_spans(have: int, count: int, size: int) -> list[tuple[int, int]]:
    """Samples have..count-1 in chunks that end on multiples of `size` (fixed for any number of ranks)."""
    edges = [have, *range((have // size + 1) * size, count, size), count]
    return list(itertools.pairwise(edges))


def _part_target(parts_dir: Path, header: dict[str, str], a: int, b: int) -> torch.Tensor | None:
    """A finished chunk's targets for samples a..b-1, or None if it is absent or unusable."""
    path = parts_dir / f"{a}-{b}.safetensors"
    if not path.is_file():
        return None
    try:
        target = _read(path, {**header, "start": str(a)})
    except ValueError:
        return None
    return target if target.shape[0] == b - a else None
