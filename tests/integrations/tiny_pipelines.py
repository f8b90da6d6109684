"""Tiny random diffusers pipelines (diffusers' own test configs, docs/models.md §3.2; no downloads)
and our Sampler on the same networks through the families/ adapters."""

from __future__ import annotations

import diffusers
import torch

from s4s_export.denoiser import ModelInfo
from s4s_export.families.guidance import TextCond
from s4s_export.families.vp import VPDenoiser, VPSchedule

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


class UNetNet(torch.nn.Module):
    """net(x_in, t, cond) for the adapters: a UNet2DConditionModel (TextCond) or a UNet2DModel (None)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, cond=None):
        kw = {"encoder_hidden_states": cond.embeds} if isinstance(cond, TextCond) else {}
        return self.unet(x, t, **kw).sample


class SD3Net(torch.nn.Module):
    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, x, t, cond):
        return self.transformer(hidden_states=x, timestep=t, encoder_hidden_states=cond.embeds,
                                pooled_projections=cond.pooled).sample


def vp_denoiser(unet, scheduler_config: dict, guidance: float, shape) -> VPDenoiser:
    schedule = VPSchedule.from_config(dict(scheduler_config))
    info = ModelInfo("tiny", tuple(shape), schedule.sigma_min, schedule.sigma_max, space="vp")
    return VPDenoiser(UNetNet(unet), schedule, scheduler_config.get("prediction_type", "epsilon"), info, guidance)


def flow_denoiser(transformer, scheduler_config: dict, guidance: float, shape):
    from s4s_export.families.flow import FlowDenoiser, flow_sigma_range

    lo, hi = flow_sigma_range(dict(scheduler_config))
    info = ModelInfo("tiny-flow", tuple(shape), lo, hi, space="flow")
    return FlowDenoiser(SD3Net(transformer), info, scheduler_config.get("num_train_timesteps", 1000), guidance)
