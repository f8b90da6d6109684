"""Validation of a sampling request against a graph's contract, and splitting it into runnable batches.

Every problem is an S4SError with one line naming the argument, what was expected and what came.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..contract import (
    DEFAULT_GUIDANCE,
    GUIDANCE,
    GUIDANCE_KEY,
    LABELS,
    NEGATIVE_POOLED_EMBEDS,
    NEGATIVE_PROMPT_EMBEDS,
    NOISE,
    TEXT_INPUTS,
    TIME_IDS,
)
from ..errors import S4SError
from ..limits import GUIDANCE_MAX, check_fits
from .noise import fresh_seed, seeded_noise
from .spec import GraphSpec


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def prepare_inputs(spec: GraphSpec, noise=None, seed: int | None = None, n: int | None = None,
                   class_labels=None, guidance_scale=None, embeddings: dict | None = None) -> dict[str, np.ndarray]:
    """The checked feed dict for the whole request: noise [B,C,H,W]; labels [B] or the text inputs
    (`embeddings` by contract name, TEXT_INPUTS) and guidance ([] or [B], as the graph takes it) if conditional."""
    chw = tuple(spec.noise.shape[1:])
    if noise is not None and seed is not None:
        raise S4SError("pass either noise or seed, not both: seed only generates the noise")
    if n is not None and (not _is_int(n) or n < 1):
        raise S4SError(f"n must be a positive integer (the number of images); got {n!r}")
    if n is not None:  # noise, output and its conversion to pictures
        check_fits(int(n), 12 * int(np.prod(chw)), "n", "noise and images", "sample in several calls (seed, start)")
    if noise is None:
        if seed is not None and (not _is_int(seed) or seed < 0):
            raise S4SError(f"seed must be a non-negative integer; got {seed!r}")
        x = seeded_noise(chw, 1 if n is None else int(n), fresh_seed() if seed is None else int(seed))
    else:
        x = _check_noise(noise, chw, n, spec.noise.dtype)
    batch = x.shape[0]
    feeds = {NOISE: x}
    if spec.text:
        if class_labels is not None:
            raise S4SError("this model is text-conditioned: it takes prompt embeddings, not class_labels; drop them")
        feeds[GUIDANCE] = _check_guidance(guidance_scale, spec.info, spec.inputs[GUIDANCE].shape, batch)
        feeds.update(_check_text(spec, embeddings or {}, batch, bool((feeds[GUIDANCE] != 1).any())))
        return {name: feeds[name] for name in spec.inputs}
    if embeddings:
        raise S4SError(f"this model takes no prompt embeddings ({', '.join(sorted(embeddings))}); drop them")
    if not spec.conditional:
        if class_labels is not None:
            raise S4SError("this model is unconditional: it takes no class_labels; drop them")
        if guidance_scale is not None:
            raise S4SError("this model is unconditional: it takes no guidance_scale; drop it")
        return feeds
    feeds[LABELS] = _check_labels(class_labels, batch, spec.num_classes)
    if GUIDANCE in spec.inputs:
        feeds[GUIDANCE] = _check_guidance(guidance_scale, spec.info, spec.inputs[GUIDANCE].shape, batch)
    elif guidance_scale is not None:
        raise S4SError("this graph has its guidance scale baked in: it takes no guidance_scale; drop it "
                       "or re-export with the guidance scale as an input")
    return feeds


def _check_noise(noise, chw: tuple[int, ...], n: int | None, dtype: np.dtype) -> np.ndarray:
    try:
        x = np.asarray(noise)
    except (ValueError, TypeError) as e:
        raise S4SError(f"noise must be an array of shape [B, {', '.join(map(str, chw))}]; "
                       f"could not convert it ({e})") from None
    if x.dtype.kind != "f":
        raise S4SError(f"noise must be a floating-point array (float32); got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1:] != chw:
        raise S4SError(f"noise must have shape [B, {', '.join(map(str, chw))}]; got {list(x.shape)}")
    if x.shape[0] < 1:
        raise S4SError("noise has batch size 0; pass at least one sample")
    if n is not None and x.shape[0] != n:
        raise S4SError(f"n={n} disagrees with the noise batch size {x.shape[0]}; drop n or pass matching noise")
    if not np.isfinite(x).all():
        raise S4SError(f"noise contains {int((~np.isfinite(x)).sum())} non-finite values (NaN or inf); "
                       "pass finite noise")
    return np.ascontiguousarray(x, dtype=dtype)


def _check_labels(labels, batch: int, num_classes: int | None) -> np.ndarray:
    valid = f"[0, {num_classes}] ({num_classes} = unconditional)" if num_classes else "non-negative integers"
    if labels is None:
        raise S4SError(f"this model is class-conditional: pass class_labels ({batch} integers in {valid})")
    if _is_int(labels):
        labels = np.full(batch, labels)
    try:
        y = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise S4SError(f"class_labels must be {batch} integers; could not convert them ({e})") from None
    if y.dtype.kind not in "iu":
        raise S4SError(f"class_labels must be integers in {valid}; got dtype {y.dtype}")
    if y.shape != (batch,):
        raise S4SError(f"class_labels must have shape [{batch}] (one per image); got {list(y.shape)}")
    bad = (y < 0) | (y > num_classes) if num_classes else (y < 0)
    if bad.any():
        raise S4SError(f"class_labels out of range: {y[bad][:5].tolist()}; valid labels are {valid}")
    return y.astype(np.int64)


def _check_guidance(scale, info: dict, shape: tuple = (), batch: int = 1) -> np.ndarray:
    """One scale per sample [B] (graphs taking guidance_scale [B]: a number is repeated, an array needs B
    values), or one for the batch (graphs exported before per-sample scales take guidance_scale [])."""
    if scale is None:
        scale = info.get(GUIDANCE_KEY, DEFAULT_GUIDANCE)
    if isinstance(scale, np.ndarray) and scale.ndim == 0:
        scale = scale.item()
    per_sample = len(shape) == 1
    if isinstance(scale, (bool, str)) or scale is None:
        raise S4SError(f"guidance_scale must be a number (1.0 = no guidance){' or one per image' * per_sample}; "
                       f"got {scale!r}")
    if isinstance(scale, numbers.Real):
        values = np.full(batch if per_sample else (), scale, dtype=np.float64)
    elif not per_sample:
        raise S4SError("this graph takes one guidance_scale for the whole batch (guidance_scale [], exported before "
                       "per-sample scales): pass one number, or re-export it with `s4s-export build` for one scale "
                       "per image")
    else:
        try:
            values = np.asarray(scale, dtype=np.float64)
        except (ValueError, TypeError):
            raise S4SError(f"guidance_scale must be a number or {batch} numbers (one per image); got {scale!r}") \
                from None
        if values.shape != (batch,):
            raise S4SError(f"guidance_scale must be a number or {batch} numbers (one per image); got an array of "
                           f"shape {list(values.shape)}")
    if not np.isfinite(values).all():
        raise S4SError(f"guidance_scale must be finite; got {values.tolist()}")
    if np.abs(values).max(initial=0.0) > GUIDANCE_MAX:
        shown = f"{float(values.reshape(-1)[np.abs(values.reshape(-1)).argmax()]):g}"
        raise S4SError(f"guidance_scale must be within [-{GUIDANCE_MAX:g}, {GUIDANCE_MAX:g}] (larger scales overflow "
                       f"float32 images); got {shown}")
    return values.astype(np.float32)


def _check_text(spec: GraphSpec, given: dict, batch: int, guided: bool) -> dict[str, np.ndarray]:
    """Text inputs [B, ...] (a single [...] or [1, ...] is repeated for the batch). Negative embeddings may be
    left out when no sample is guided (they are then unused zeros); SDXL's time ids default to
    (H, W, 0, 0, H, W) of the decoded image, as diffusers' pipelines set them."""
    unknown = sorted(set(given) - set(TEXT_INPUTS))
    if unknown:
        raise S4SError(f"unknown text inputs {', '.join(unknown)}; this graph takes "
                       f"{', '.join(n for n in TEXT_INPUTS if n in spec.inputs)}")
    extra = sorted(n for n in given if n not in spec.inputs and given[n] is not None)
    if extra:
        raise S4SError(f"this graph takes no {', '.join(extra)}; drop it")
    out = {}
    for name in (n for n in TEXT_INPUTS if n in spec.inputs):
        t = spec.inputs[name]
        value = given.get(name)
        if value is None and name == TIME_IDS:
            h, w = _decoded_size(spec)
            value = np.array([h, w, 0, 0, h, w], dtype=np.float32)
        if value is None and name in (NEGATIVE_PROMPT_EMBEDS, NEGATIVE_POOLED_EMBEDS) and not guided:
            value = np.zeros(t.shape[1:], dtype=t.dtype)
        if value is None:
            need = "with guidance_scale != 1 pass the empty prompt's embeddings" \
                if name in (NEGATIVE_PROMPT_EMBEDS, NEGATIVE_POOLED_EMBEDS) else "pass it"
            raise S4SError(f"this model is text-conditioned: {name} {_dims(t.shape)} is missing; {need}")
        out[name] = _batched(name, value, t.shape[1:], batch, t.dtype)
    return out


def _dims(shape: tuple) -> str:
    return "[" + ", ".join("B" if d is None else str(d) for d in shape) + "]"


def _decoded_size(spec: GraphSpec) -> tuple[int, int]:
    shape = spec.output.shape
    return (shape[1], shape[2]) if spec.info.get("output") == "uint8" else (shape[2], shape[3])


def _batched(name: str, value, sample_shape: tuple, batch: int, dtype: np.dtype) -> np.ndarray:
    try:
        x = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise S4SError(f"{name} must be an array of shape [B, {', '.join(map(str, sample_shape))}]; could not "
                       f"convert it ({e})") from None
    if x.dtype.kind not in "fiu":
        raise S4SError(f"{name} must be a floating-point array; got dtype {x.dtype}")
    if x.shape == tuple(sample_shape) or (x.ndim == len(sample_shape) + 1 and x.shape[0] == 1
                                          and x.shape[1:] == tuple(sample_shape)):
        x = np.broadcast_to(x.reshape(sample_shape), (batch, *sample_shape))
    if x.shape != (batch, *sample_shape):
        raise S4SError(f"{name} must have shape [{batch}, {', '.join(map(str, sample_shape))}] (or one row for all "
                       f"images); got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise S4SError(f"{name} contains non-finite values (NaN or inf); pass finite embeddings")
    return np.ascontiguousarray(x, dtype=dtype)


def plan_batches(batch: int, batch_range: tuple[int, int | None], what: str = "graph") -> list[int]:
    """Sizes of the fewest runs covering `batch` images, each within `[min, max]`, the largest first."""
    lo, hi = batch_range
    if batch < lo:
        raise S4SError(f"batch {batch} is below the {what}'s minimum batch {lo}; ask for at least {lo} images "
                       "or rebuild with a smaller minimum batch")
    if hi is None or batch <= hi:
        return [batch]
    runs = -(-batch // hi)
    if runs * lo > batch:
        raise S4SError(f"batch {batch} cannot be split into runs within the {what}'s batch range [{lo}, {hi}]; "
                       f"ask for a multiple of {lo} images or rebuild with a wider batch range")
    extra = batch - runs * lo
    sizes = []
    for _ in range(runs):
        grow = min(hi - lo, extra)
        sizes.append(lo + grow)
        extra -= grow
    return sizes
