"""Train the built-in demo model: a small EDMPrecond(SongUNet) on sklearn's digits at 16x16.

    python scripts/train_demo.py                      # train, write the asset and docs/demo_samples.png
    python scripts/train_demo.py --grid-only          # only redraw the sample grid from the asset

Data: `sklearn.datasets.load_digits()` (1797 images, 8x8, values 0..16), upsampled to 16x16 by
nearest neighbour followed by a [1,2,1] blur, one channel, scaled to [-1, 1]. Training follows
EDM: log-normal sigma (P_mean -1.2, P_std 1.2), loss weight (s^2+sd^2)/(s sd)^2, Adam, and an EMA
of the weights whose half-life ramps up with the images seen. Everything is seeded; CPU only.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s4s_export.networks import build_network  # noqa: E402
from s4s_export.networks.demo import DEMO_ASSET, load_demo  # noqa: E402
from s4s_export.sampler import Sampler  # noqa: E402
from s4s_export.solvers import make_solver  # noqa: E402


def digits_16x16() -> torch.Tensor:
    """sklearn digits as float32 [1797, 1, 16, 16] in [-1, 1]."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, scale_factor=2, mode="nearest")
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.outer(k, k)[None, None])
    return x.clamp(0, 1) * 2 - 1


def edm_loss(net: torch.nn.Module, y: torch.Tensor, p_mean: float, p_std: float, sigma_data: float) -> torch.Tensor:
    """EDM training loss (Karras et al. 2022, eq. 2 with the EDM weighting)."""
    sigma = (torch.randn(y.shape[0], 1, 1, 1) * p_std + p_mean).exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    d = net(y + torch.randn_like(y) * sigma, sigma.flatten())
    return (weight * (d - y).square()).mean()


def write_png(path: Path, img: np.ndarray) -> None:
    """Minimal 8-bit greyscale PNG writer (no PIL needed)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].astype(np.uint8).tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def save_grid(x: torch.Tensor, path: Path, cols: int = 8, zoom: int = 4, pad: int = 1) -> None:
    """[N, 1, H, W] in [-1, 1] -> PNG grid, each cell upscaled `zoom`x (nearest)."""
    n, _, h, w = x.shape
    rows = math.ceil(n / cols)
    u8 = (x[:, 0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = u8[k]
    write_png(path, np.kron(grid, np.ones((zoom, zoom), dtype=np.uint8)))


@torch.no_grad()
def make_grid(out_png: Path, asset: Path, seed: int = 0, n: int = 64) -> None:
    """Draw n samples from the saved asset with the project's Sampler and EDM Heun at NFE 35."""
    net = load_demo(asset)
    noise = torch.randn(n, *net.info.shape, generator=torch.Generator().manual_seed(seed))
    solver = make_solver("heun", nfe=35, schedule="edm", sigma_min=net.info.sigma_min, sigma_max=net.info.sigma_max)
    save_grid(Sampler(net, solver)(noise), out_png)


def train(args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = digits_16x16()
    init_kwargs = dict(
        img_resolution=16, img_channels=1, label_dim=0, use_fp16=False, sigma_min=0.002, sigma_max=80.0,
        sigma_data=0.5, model_type="SongUNet", model_channels=args.model_channels, channel_mult=args.channel_mult,
        channel_mult_emb=4, num_blocks=args.num_blocks, attn_resolutions=args.attn_resolutions, dropout=0.0,
        label_dropout=0.0, embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
        decoder_type="standard", resample_filter=[1, 1],
    )
    net = build_network("EDMPrecond", **init_kwargs).train()
    ema = build_network("EDMPrecond", **init_kwargs).eval().requires_grad_(False)
    ema.load_state_dict(net.state_dict())
    n_params = sum(p.numel() for p in net.parameters())
    print(f"params {n_params:,}  data {tuple(data.shape)}  steps {args.steps}  batch {args.batch}", flush=True)

    opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed + 1)
    t0, running = time.time(), 0.0
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(data), (args.batch,), generator=gen)
        loss = edm_loss(net, data[idx], args.p_mean, args.p_std, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # Linear warm-up, then cosine decay to 10% over the run.
        frac = step / args.steps
        lr = args.lr * min(1.0, step / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        # EMA with EDM's ramped half-life (in images).
        nimg = step * args.batch
        halflife = min(args.ema_halflife_kimg * 1000, nimg * args.ema_rampup)
        beta = 0.5 ** (args.batch / max(halflife, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - beta)
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step:6d}  loss {running:.4f}  lr {lr:.2e}  {time.time() - t0:7.1f}s", flush=True)
    train_seconds = time.time() - t0

    metadata = {
        "format": "s4s-export demo model v1",
        "network": json.dumps({"class_name": "EDMPrecond", "init_kwargs": init_kwargs}),
        "training": json.dumps({
            "dataset": "sklearn.datasets.load_digits (1797 images, 8x8 -> 16x16 nearest + [1,2,1] blur, [-1,1])",
            "loss": "EDM", "P_mean": args.p_mean, "P_std": args.p_std, "sigma_data": 0.5,
            "optimizer": "Adam", "lr": args.lr, "warmup_steps": args.warmup, "lr_schedule": "cosine to 10%",
            "batch": args.batch, "steps": args.steps, "seed": args.seed, "ema_halflife_kimg": args.ema_halflife_kimg,
            "ema_rampup": args.ema_rampup, "weights": "ema", "threads": args.threads,
            "train_seconds": round(train_seconds, 1), "final_loss": round(running, 5), "params": n_params,
            "torch": torch.__version__,
        }),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(args.out), metadata=metadata)
    args.out.chmod(0o644)  # package data must be world-readable
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {train_seconds:.0f}s", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEMO_ASSET, help="safetensors asset to write")
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "demo_samples.png", help="sample grid to write")
    p.add_argument("--grid-only", action="store_true", help="skip training; redraw the grid from --out")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--p-mean", type=float, default=-1.2)
    p.add_argument("--p-std", type=float, default=1.2)
    p.add_argument("--ema-halflife-kimg", type=float, default=50.0)
    p.add_argument("--ema-rampup", type=float, default=0.1)
    p.add_argument("--model-channels", type=int, default=16)
    p.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 2])
    p.add_argument("--num-blocks", type=int, default=2)
    p.add_argument("--attn-resolutions", type=int, nargs="*", default=[])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared 2-core machine")
    p.add_argument("--log-every", type=int, default=250)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.grid_only:
        train(args)
    torch.set_num_threads(args.threads)
    make_grid(args.png, args.out, seed=args.seed)
    print(f"wrote {args.png} (Sampler, heun NFE 35)", flush=True)


if __name__ == "__main__":
    main()
