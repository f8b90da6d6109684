"""Tiny stand-in sampler graphs with the exported contract (tests may use torch; runtime code may not)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch

NUM_CLASSES = 3
CHW = (1, 6, 5)


class TinySampler(torch.nn.Module):
    """noise [B,C,H,W] (+ class_labels [B], guidance_scale []) -> images in [-1, 1], or uint8 NHWC."""

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
            x = x + guidance_scale * self.embed(class_labels)[:, :, None, None]
        x = torch.tanh(x)
        if self.uint8:
            return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return x


def export_tiny(path: Path, num_classes: int = 0, uint8: bool = False, batch: int | None = None,
                info: dict | None = None) -> Path:
    """Export a TinySampler to `path` (+ `<stem>.json` sidecar): dynamic batch unless `batch` is given."""
    model = TinySampler(num_classes, uint8).eval()
    b = batch or 2
    args = (torch.randn(b, *CHW),)
    names = ["noise"]
    if num_classes:
        args += (torch.zeros(b, dtype=torch.int64), torch.tensor(1.5))
        names += ["class_labels", "guidance_scale"]
    dynamic = None if batch else {n: {0: "B"} for n in names[:2] + ["images"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=names, output_names=["images"],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    model_proto = onnx.load(str(path))
    onnx.helper.set_model_props(model_proto, {"nfe": "1", "num_classes": str(num_classes)})
    onnx.save(model_proto, str(path))
    sidecar = {"format": "s4s-export.sampler", "nfe": 1, "solver": "tiny", "precision": "fp32",
               "model": {"name": "tiny", "num_classes": num_classes}, **(info or {})}
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path
