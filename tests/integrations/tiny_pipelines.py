"""Tiny random diffusers pipelines (diffusers' own test configs, docs/models.md; no downloads)
and the same models loaded as our denoisers through `diffusers:PATH`."""

from __future__ import annotations

import diffusers
import torch

from s4s_export.families.diffusers_folder import load_diffusers

SD_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                    "steps_offset": 1}


def tiny_unet() -> diffusers.UNet2DConditionModel:
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8), norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8, attention_head_dim=2,
        in_channels=4, out_channels=4, layers_per_block=1, sample_size=16).eval()


def tiny_vae() -> diffusers.AutoencoderKL:
    torch.manual_seed(1)
    return diffusers.AutoencoderKL(block_out_channels=[2, 4], norm_num_groups=2, in_channels=3, out_channels=3,
                                   down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                   latent_channels=4).eval()


def tiny_pixel_unet() -> diffusers.UNet2DModel:
    torch.manual_seed(2)
    return diffusers.UNet2DModel(block_out_channels=(4, 8), norm_num_groups=2,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=3, in_channels=3,
                                 out_channels=3, layers_per_block=2, sample_size=16).eval()


def tiny_sd3_transformer() -> diffusers.SD3Transformer2DModel:
    torch.manual_seed(3)
    return diffusers.SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=1,
                                           attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                           joint_attention_dim=32, pooled_projection_dim=64, out_channels=4).eval()


def sd_pipeline(scheduler) -> diffusers.StableDiffusionPipeline:
    pipe = diffusers.StableDiffusionPipeline(vae=tiny_vae(), text_encoder=None, tokenizer=None, unet=tiny_unet(),
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ddpm_pipeline(scheduler) -> diffusers.DDPMPipeline:
    pipe = diffusers.DDPMPipeline(unet=tiny_pixel_unet(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd3_pipeline(scheduler) -> diffusers.StableDiffusion3Pipeline:
    pipe = diffusers.StableDiffusion3Pipeline(transformer=tiny_sd3_transformer(), scheduler=scheduler, vae=tiny_vae(),
                                              text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                              text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class FolderRef:
    """A `diffusers:PATH` model reference as families/diffusers_folder.py reads it."""

    def __init__(self, target: str):
        self.target, self.checkpoint, self.random_weights, self.config = target, None, False, None


def saved_model(pipe, folder, guidance: float = 1.0):
    """Save the pipeline and load it back as our denoiser (the `diffusers:PATH` loader)."""
    pipe.save_pretrained(folder)
    return load_diffusers(FolderRef(str(folder)), guidance_scale=guidance)


def dit_pipeline(scheduler) -> diffusers.DiTPipeline:
    """Class-conditional DiT (learned variance: 8 output channels, the pipeline passes eps on); null class 1000."""
    torch.manual_seed(4)
    dit = diffusers.DiTTransformer2DModel(in_channels=4, out_channels=8, activation_fn="gelu-approximate",
                                          num_attention_heads=2, attention_head_dim=4, attention_bias=True,
                                          num_layers=1, norm_type="ada_norm_zero", num_embeds_ada_norm=1000,
                                          patch_size=2, sample_size=8).eval()
    pipe = diffusers.DiTPipeline(transformer=dit, vae=tiny_vae(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
