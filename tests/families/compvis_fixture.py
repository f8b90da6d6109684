"""Tiny CompVis LatentDiffusion checkpoints and configs for tests (no CompVis code needed).

`TINY` holds three variants in CompVis's own config terms: "cin" (cin256-v2's layout: spatial
transformer UNet, ClassEmbedder with a null row, VQ first stage), "lsun" (LSUN-Bedroom's:
AttentionBlock UNet with num_head_channels, unconditional, VQ first stage) and "kl" (as "lsun" with
a KL first stage, the layout of CompVis's KL LDMs such as LSUN-Churches). `LAYOUT` is the key
names and shapes CompVis's modules give for them, written by scripts/compvis_reference.py from
CompVis/latent-diffusion's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

LAYOUT = Path(__file__).parent / "data" / "compvis_tiny_layout.json"
SCHEDULE = {"linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000}
DDCONFIG = {"double_z": False, "z_channels": 3, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
FIRST_STAGE = {"embed_dim": 3, "n_embed": 16}
UNET = {"image_size": 8, "in_channels": 3, "out_channels": 3, "model_channels": 32, "attention_resolutions": [2],
        "num_res_blocks": 1, "channel_mult": [1, 2]}
TINY = {
    "cin": {"unet": {**UNET, "num_heads": 2, "use_spatial_transformer": True, "transformer_depth": 1,
                     "context_dim": 16},
            "ddconfig": DDCONFIG, "first_stage": FIRST_STAGE, "n_classes": 11},
    "lsun": {"unet": {**UNET, "num_head_channels": 16}, "ddconfig": DDCONFIG, "first_stage": FIRST_STAGE},
    "kl": {"unet": {**UNET, "num_head_channels": 16}, "ddconfig": {**DDCONFIG, "double_z": True},
           "first_stage": {"embed_dim": 3}, "first_stage_target": "ldm.models.autoencoder.AutoencoderKL"},
}


def config_dict(variant: str) -> dict:
    """The CompVis YAML layout (configs/latent-diffusion/cin256-v2.yaml, lsun_bedrooms-ldm-vq-4.yaml)."""
    t = TINY[variant]
    params = {**SCHEDULE, "num_timesteps_cond": 1, "first_stage_key": "image", "image_size": 8, "channels": 3,
              "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": t["unet"]},
              "first_stage_config": {"target": t.get("first_stage_target", "ldm.models.autoencoder.VQModelInterface"),
                                     "params": {**t["first_stage"], "ddconfig": t["ddconfig"],
                                                "lossconfig": {"target": "torch.nn.Identity"}}}}
    if t.get("n_classes"):
        params.update(cond_stage_key="class_label", conditioning_key="crossattn", cond_stage_trainable=True,
                      use_ema=False,
                      cond_stage_config={"target": "ldm.modules.encoders.modules.ClassEmbedder",
                                         "params": {"n_classes": t["n_classes"], "embed_dim": 16,
                                                    "key": "class_label"}})
    else:
        params["cond_stage_config"] = "__is_unconditional__"
    return {"model": {"base_learning_rate": 1e-4, "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
                      "params": params}}


def write_config(variant: str, path: Path, **changes) -> Path:
    import yaml

    cfg = config_dict(variant)
    cfg["model"]["params"].update(changes)
    path.write_text(yaml.safe_dump(cfg))
    return path


def schedule_buffers() -> dict[str, torch.Tensor]:
    """LatentDiffusion.register_schedule's buffers for the linear schedule (ldm/models/diffusion/ddpm.py)."""
    betas = (torch.linspace(SCHEDULE["linear_start"] ** 0.5, SCHEDULE["linear_end"] ** 0.5, SCHEDULE["timesteps"],
                            dtype=torch.float64) ** 2).numpy()
    ac = np.cumprod(1.0 - betas)
    prev = np.append(1.0, ac[:-1])
    f32 = {"betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": prev, "sqrt_alphas_cumprod": np.sqrt(ac),
           "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - ac), "log_one_minus_alphas_cumprod": np.log(1 - ac),
           "sqrt_recip_alphas_cumprod": np.sqrt(1 / ac), "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / ac - 1),
           "posterior_variance": betas * (1 - prev) / (1 - ac)}
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in f32.items()}


def random_state(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the CompVis layout of `variant` (norm weights near 1, others ~ 1/sqrt(fan_in))."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in sorted(json.loads(LAYOUT.read_text())[variant].items()):
        fan_in = max(1, int(np.prod(shape[1:]))) if len(shape) > 1 else 1
        state[k] = torch.randn(shape, generator=g) / fan_in**0.5 + (1.0 if len(shape) == 1 and "norm" in k else 0.0)
    return state


def lightning_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    """torch.save a Lightning-style dict: the state_dict with schedule buffers, plus non-tensor entries."""
    sd = {**state, **schedule_buffers()}
    torch.save({"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.4.2", "state_dict": sd,
                "callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": {"best_model_score": torch.tensor(0.1),
                                                                        "best_model_path": "x.ckpt"}},
                "optimizer_states": [], "lr_schedulers": []}, path)
    return path


def tiny_compvis_ref(variant: str, folder: Path):
    """A reference (as the CLI makes) to a tiny CompVis `variant`: a Lightning checkpoint + YAML in `folder`."""
    from types import SimpleNamespace

    return SimpleNamespace(target=str(lightning_checkpoint(random_state(variant), folder / f"{variant}.ckpt")),
                           config=str(write_config(variant, folder / f"{variant}.yaml")), checkpoint=None,
                           random_weights=False)
