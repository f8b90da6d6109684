"""Test helpers: tiny stand-in sampler graphs with the exported contract (tests may use torch; runtime code
may not), and a strict decoder for the PNGs the runtime writes."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import onnx
import torch

NUM_CLASSES = 3
CHW = (1, 6, 5)


class TinySampler(torch.nn.Module):
    """noise [B,C,H,W] (+ class_labels [B], guidance_scale [] or [B]) -> images in [-1, 1], or uint8 NHWC."""

    def __init__(self, num_classes: int = 0, uint8: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(CHW[0], CHW[0], 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.fill_(0.05)
        self.embed = torch.nn.Embedding(num_classes + 1, CHW[0]) if num_classes else None
        self.uint8 = uint8

    def forward(self, noise, class_labels=None, guidance_scale=None):
        x = 0.5 * noise + self.conv(noise)
        if self.embed is not None:
            scale = guidance_scale[:, None, None, None] if guidance_scale.ndim else guidance_scale
            x = x + scale * self.embed(class_labels)[:, :, None, None]
        x = torch.tanh(x)
        if self.uint8:
            return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return x


def export_tiny(path: Path, num_classes: int = 0, uint8: bool = False, batch: int | None = None,
                info: dict | None = None, per_sample: bool = False) -> Path:
    """Export a TinySampler to `path` (+ `<stem>.json` sidecar): dynamic batch unless `batch` is given.

    Conditional graphs take guidance_scale [] (the form exported before per-sample scales), or [B] with
    `per_sample` (as `s4s-export build` exports them now)."""
    model = TinySampler(num_classes, uint8).eval()
    b = batch or 2
    args = (torch.randn(b, *CHW),)
    names = ["noise"]
    if num_classes:
        args += (torch.zeros(b, dtype=torch.int64), torch.full((b,), 1.5) if per_sample else torch.tensor(1.5))
        names += ["class_labels", "guidance_scale"]
    dynamic = None if batch else {n: {0: "B"} for n in names[:3 if per_sample else 2] + ["images"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=names, output_names=["images"],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    sidecar = {"format": "s4s-export.sampler", "nfe": 1, "solver": "tiny", "precision": "fp32",
               "model": {"name": "tiny", "num_classes": num_classes}, **(info or {})}
    model_proto = onnx.load(str(path))  # metadata as the exporter writes it: one JSON value per top-level key
    onnx.helper.set_model_props(model_proto, {k: json.dumps(v) for k, v in sidecar.items()})
    onnx.save(model_proto, str(path))
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def decode_png(data: bytes) -> np.ndarray:
    """Minimal decoder for the files we write: 8-bit, filter 0, checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + w * channels)
    assert depth == 8 and (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, channels)
