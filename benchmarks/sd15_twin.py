"""The issue-12 benchmark on a Stable Diffusion 1.5 architecture twin: the baked graph against the host-loop pipeline.

    python benchmarks/sd15_twin.py [--out /tmp/sd15-twin] [--nfe 4] [--batch 1] [--threads 2] [--repeats 5]
                                   [--warmup 1] [--resolution 256] [--provider cpu] [--markdown | --json]

Writes (once; reused afterwards) a diffusers folder with SD 1.5's UNet, VAE and scheduler configs and seeded
random weights (latency does not depend on the weights), without downloads, then runs
`s4s-export bench --model diffusers:OUT/pipeline --graphs OUT/graphs ...` in a fresh process (the torch
model built here is gone by then). The configs, from docs/models.md "Stable Diffusion v1.5 in diffusers":

- UNet2DConditionModel: in/out 4 channels, block_out_channels 320/640/1280/1280, layers_per_block 2,
  attention_head_dim 8, cross_attention_dim 768, CrossAttnDownBlock2D x3 + DownBlock2D,
  UpBlock2D + CrossAttnUpBlock2D x3; sample_size = resolution / 8 (64 for SD's 512, 32 for 256);
- AutoencoderKL: block_out_channels 128/256/512/512, 4 DownEncoderBlock2D / UpDecoderBlock2D, layers_per_block 2,
  latent 4 channels, scaling_factor 0.18215;
- scheduler: PNDMScheduler, scaled_linear betas 0.00085..0.012, 1000 steps, steps_offset 1, skip_prk_steps,
  epsilon prediction; bench replays it as DPMSolverMultistepScheduler.from_config (dpmpp2m), as users swap it.

The exported graphs (3.4 GB of UNet weights each) go to OUT/graphs with external data; the export peaks at
roughly 3x the weights in memory: check `free -g` first.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
from pathlib import Path

UNET = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
           layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           norm_num_groups=32, act_fn="silu", scaling_factor=0.18215)
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False, prediction_type="epsilon")


def write_twin(folder: Path, resolution: int) -> None:
    """Save the twin pipeline (seeded random weights) to `folder` unless it is there already."""
    if (folder / "model_index.json").is_file():
        return
    import diffusers
    import torch

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(sample_size=resolution // 8, **UNET)
    vae = diffusers.AutoencoderKL(sample_size=resolution, **VAE)
    pipeline = diffusers.StableDiffusionPipeline(vae=vae, unet=unet, scheduler=diffusers.PNDMScheduler(**SCHEDULER),
                                                 text_encoder=None, tokenizer=None, safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)
    millions = [sum(p.numel() for p in m.parameters()) / 1e6 for m in (unet, vae)]
    print(f"SD 1.5 twin: UNet {millions[0]:.0f}M parameters, VAE {millions[1]:.0f}M; writing {folder}", file=sys.stderr)
    pipeline.save_pretrained(folder, safe_serialization=True)
    del pipeline, unet, vae
    gc.collect()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/sd15-twin", help="folder for the twin pipeline and the graphs")
    p.add_argument("--resolution", type=int, default=256, help="image size (latents are 1/8)")
    p.add_argument("--nfe", default="4")
    p.add_argument("--batch", default="1")
    p.add_argument("--threads", default="2")
    p.add_argument("--repeats", default="5")
    p.add_argument("--warmup", default="1")
    p.add_argument("--provider", default="cpu")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    write_twin(out / "pipeline", args.resolution)
    command = [sys.executable, "-m", "s4s_export", "bench", "--model", f"diffusers:{out / 'pipeline'}",
               "--graphs", str(out / "graphs"), "--nfe", args.nfe, "--batch", args.batch, "--threads", args.threads,
               "--repeats", args.repeats, "--warmup", args.warmup, "--provider", args.provider, "--backend",
               "onnxruntime", *(["--markdown"] if args.markdown else []), *(["--json"] if args.json else [])]
    print("running: " + " ".join(command), file=sys.stderr)
    return subprocess.call(command, env={**os.environ, "OMP_NUM_THREADS": args.threads})


if __name__ == "__main__":
    sys.exit(main())
