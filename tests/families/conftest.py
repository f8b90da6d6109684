"""Tiny random diffusers pipelines saved with save_pretrained (diffusers' own test configs; no downloads)."""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
torch = pytest.importorskip("torch")

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def tiny_unet(**kw) -> "diffusers.UNet2DConditionModel":
    # tests/models/unets/test_models_unet_2d_condition.py (docs/models.md §3.2)
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8), norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8, attention_head_dim=2,
        in_channels=4, out_channels=4, layers_per_block=1, sample_size=16, **kw)


def tiny_vae() -> "diffusers.AutoencoderKL":
    # tests/models/autoencoders/vae.py get_autoencoder_kl_config
    torch.manual_seed(1)
    return diffusers.AutoencoderKL(block_out_channels=[2, 4], norm_num_groups=2, in_channels=3, out_channels=3,
                                   down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                   latent_channels=4)


def tiny_sd_pipeline(scheduler) -> "diffusers.StableDiffusionPipeline":
    return diffusers.StableDiffusionPipeline(vae=tiny_vae(), text_encoder=None, tokenizer=None, unet=tiny_unet(),
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)


def tiny_sd3_transformer() -> "diffusers.SD3Transformer2DModel":
    # tests/models/transformers/test_models_transformer_sd3.py
    torch.manual_seed(0)
    return diffusers.SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=1,
                                           attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                           joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)


def tiny_sd3_pipeline(scheduler) -> "diffusers.StableDiffusion3Pipeline":
    return diffusers.StableDiffusion3Pipeline(transformer=tiny_sd3_transformer(), scheduler=scheduler, vae=tiny_vae(),
                                              text_encoder=None, tokenizer=None, text_encoder_2=None,
                                              tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
