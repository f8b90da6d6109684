"""Tiny random diffusers models and pipelines (diffusers' own test configs; no downloads). Importing skips without
diffusers."""

from __future__ import annotations

import json

import pytest

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
torch = pytest.importorskip("torch")

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def tiny_unet(**kw) -> diffusers.UNet2DConditionModel:
    # tests/models/unets/test_models_unet_2d_condition.py (docs/models.md)
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8), norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8, attention_head_dim=2,
        in_channels=4, out_channels=4, layers_per_block=1, sample_size=16, **kw)


def tiny_vae() -> diffusers.AutoencoderKL:
    # tests/models/autoencoders/vae.py get_autoencoder_kl_config
    torch.manual_seed(1)
    return diffusers.AutoencoderKL(block_out_channels=[2, 4], norm_num_groups=2, in_channels=3, out_channels=3,
                                   down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                   latent_channels=4)


def tiny_sd_pipeline(scheduler) -> diffusers.StableDiffusionPipeline:
    return diffusers.StableDiffusionPipeline(vae=tiny_vae(), text_encoder=None, tokenizer=None, unet=tiny_unet(),
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)


def tiny_sd3_transformer() -> diffusers.SD3Transformer2DModel:
    # tests/models/transformers/test_models_transformer_sd3.py
    torch.manual_seed(0)
    return diffusers.SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=1,
                                           attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                           joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)


def tiny_sd3_pipeline(scheduler) -> diffusers.StableDiffusion3Pipeline:
    return diffusers.StableDiffusion3Pipeline(transformer=tiny_sd3_transformer(), scheduler=scheduler, vae=tiny_vae(),
                                              text_encoder=None, tokenizer=None, text_encoder_2=None,
                                              tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)


def tiny_sdxl_pipeline(scheduler) -> diffusers.StableDiffusionXLPipeline:
    # tests/pipelines/stable_diffusion_xl/test_stable_diffusion_xl.py: pooled 32 + 6 time ids x 8 = 80
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(2, 4), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=1)
    return diffusers.StableDiffusionXLPipeline(vae=tiny_vae(), text_encoder=None, text_encoder_2=None, tokenizer=None,
                                               tokenizer_2=None, unet=unet, scheduler=scheduler)


def tiny_dit_pipeline(scheduler) -> diffusers.DiTPipeline:
    # tests/models/transformers/test_models_dit_transformer2d.py, with 1000 classes: DiTPipeline's null class is 1000
    torch.manual_seed(0)
    dit = diffusers.DiTTransformer2DModel(in_channels=4, out_channels=8, activation_fn="gelu-approximate",
                                          num_attention_heads=2, attention_head_dim=4, attention_bias=True,
                                          num_layers=1, norm_type="ada_norm_zero", num_embeds_ada_norm=1000,
                                          patch_size=2, sample_size=8).eval()  # eval: no label dropout
    return diffusers.DiTPipeline(transformer=dit, vae=tiny_vae(), scheduler=scheduler)


def tiny_clip(folder):
    """A CLIP text encoder (hidden size 8: the tiny UNet's cross_attention_dim) and a tokenizer over a tiny BPE
    vocabulary (letters, end-of-word letters, two merges), written without downloads."""
    transformers = pytest.importorskip("transformers")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        vocab |= {c + suffix: len(vocab) + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    vocab |= {"at</w>": len(vocab), "cat</w>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\na t</w>\nc at</w>\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    torch.manual_seed(2)
    config = transformers.CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8,
                                         intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                                         vocab_size=len(vocab), max_position_embeddings=77)
    return transformers.CLIPTextModel(config).eval(), tokenizer
