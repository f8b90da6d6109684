"""Tiny random diffusers models, saved with save_pretrained, for the family examples and tests (no downloads).

The configs follow diffusers' own tests (tests/models/... in diffusers; docs/models.md). The CLIP
tokenizer has a byte-level vocabulary and no merges, so it is built here instead of downloaded.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import diffusers
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiny_clip(hidden: int = 8, max_length: int = 16) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """A byte-level CLIP tokenizer and a random 2-layer CLIPTextModel with `hidden` features."""
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps(vocab))
        (Path(d) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"), model_max_length=max_length)
    torch.manual_seed(2)
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden,
                                           num_attention_heads=2, num_hidden_layers=2,
                                           max_position_embeddings=max_length,
                                           bos_token_id=512, eos_token_id=513, pad_token_id=513))
    return tokenizer, encoder.eval()


def tiny_vae() -> diffusers.AutoencoderKL:
    torch.manual_seed(1)
    return diffusers.AutoencoderKL(block_out_channels=[2, 4], norm_num_groups=2, in_channels=3, out_channels=3,
                                   down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                   latent_channels=4)


def save_tiny_sd(folder: str | Path) -> Path:
    """A Stable-Diffusion-like pipeline: text UNet2DConditionModel, CLIP text encoder, KL VAE, DDIM scheduler."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8), norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8, attention_head_dim=2,
        in_channels=4, out_channels=4, layers_per_block=1, sample_size=16)
    tokenizer, encoder = tiny_clip(hidden=8)
    pipe = diffusers.StableDiffusionPipeline(vae=tiny_vae(), text_encoder=encoder, tokenizer=tokenizer, unet=unet,
                                             scheduler=diffusers.DDIMScheduler(**SD_SCHEDULER), safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def save_tiny_dit(folder: str | Path) -> Path:
    """A DiT-like class-conditional latent transformer (1000 classes, learned variance), KL VAE."""
    torch.manual_seed(0)
    dit = diffusers.DiTTransformer2DModel(in_channels=4, out_channels=8, activation_fn="gelu-approximate",
                                          num_attention_heads=2, attention_head_dim=4, attention_bias=True,
                                          num_layers=1, norm_type="ada_norm_zero", num_embeds_ada_norm=1000,
                                          patch_size=2, sample_size=8)
    diffusers.DiTPipeline(transformer=dit, vae=tiny_vae(), scheduler=diffusers.DDIMScheduler()).save_pretrained(
        folder, safe_serialization=True)
    return Path(folder)


def save_tiny_flow(folder: str | Path) -> Path:
    """An SD3-like flow-matching transformer saved as a model folder with its FlowMatch scheduler config.

    Without text encoders, prompts come as embeddings (`--embeddings`); see flow_transformer.py.
    """
    torch.manual_seed(0)
    net = diffusers.SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=1,
                                          attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                          joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)
    folder = Path(folder)
    net.save_pretrained(folder / "transformer", safe_serialization=True)
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(folder / "scheduler")
    return folder / "transformer"


def save_tiny_pixel_unet(folder: str | Path) -> Path:
    """A pixel-space unconditional UNet2DModel (DDPM-like, 3x16x16) with a DDPM scheduler."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1, sample_size=16,
                                 in_channels=3, out_channels=3, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(folder,
                                                                                           safe_serialization=True)
    return Path(folder)


def cli(*args: str) -> None:
    """Run `s4s-export ARGS...` (this interpreter's install), echoing the command; stop on failure."""
    import subprocess
    import sys

    print("$ s4s-export " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "s4s_export", *args], check=True)


def learn_and_eval(model: str, workdir: Path, *extra: str, nfe: str = "4") -> None:
    """learn a solver with small settings (minutes on 2 cores), then eval it against classical solvers at its NFE."""
    small = ["--samples", "64", "--val-samples", "16", "--batch", "16", "--alternations", "2"]
    cli("learn", "--model", model, *extra, "--nfe", nfe, *small, "--workdir", str(workdir))
    cli("eval", "--model", model, *extra, "--solver", f"{workdir / 'solvers' / f'nfe{nfe}.json'},dpmpp3m,unipc,ipndm",
        "--nfe", nfe, "--samples", "16", "--plot", str(workdir / "eval.png"))
