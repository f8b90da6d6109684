"""Sampler outputs as pictures: uint8 conversion, grids, and a numpy + zlib PNG writer."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import S4SError
from ..fileio import atomic_write_bytes


def to_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC images from a sampler output: float NCHW in [-1, 1] (clipped, rounded) or uint8 NHWC as is."""
    if images.ndim != 4:
        raise S4SError(f"images must be a batch [B, ...] of rank 4; got shape {list(images.shape)}")
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind != "f":
        raise S4SError(f"images must be float NCHW in [-1, 1] or uint8 NHWC; got dtype {images.dtype}")
    x = np.clip((images.astype(np.float32) + 1.0) * 127.5, 0.0, 255.0)
    return np.rint(x).astype(np.uint8).transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """One [H, W, C] uint8 picture of a batch of uint8 NHWC images, `ncol` per row (default: near-square)."""
    b, h, w, c = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(b)))
    nrow = -(-b // ncol)
    grid = np.zeros((pad + nrow * (h + pad), pad + ncol * (w + pad), c), dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y:y + h, x:x + w] = img
    return grid


GRID_MIN_PIXELS = 256  # grids are enlarged (nearest neighbour, whole factors) to at least this many pixels a side


def enlarge(image: np.ndarray, min_pixels: int = GRID_MIN_PIXELS) -> np.ndarray:
    """An [H, W(, C)] picture repeated by the smallest whole factor that makes its shorter side >= `min_pixels`."""
    scale = max(1, -(-min_pixels // max(1, min(image.shape[:2]))))
    return image.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else image


_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: gray, gray+alpha, RGB, RGBA


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit PNG of a uint8 [H, W] or [H, W, C] image (C = 1, 2, 3 or 4)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in _COLOR_TYPES:
        raise S4SError(f"a PNG needs uint8 [H, W, C] with C in 1..4; got {image.dtype} {list(image.shape)}")
    h, w, c = image.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * c)], axis=1)  # filter byte 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + chunk(b"IEND", b""))


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 [H, W(, C)] image as PNG, atomically."""
    return atomic_write_bytes(path, png_bytes(image))
