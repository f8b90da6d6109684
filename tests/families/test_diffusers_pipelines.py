"""Our Sampler reproduces diffusers' own pipelines on tiny random models (final latents, 1e-4 relative)."""

from __future__ import annotations

import pytest
import torch

from s4s_export.families.diffusers_folder import load_diffusers
from s4s_export.families.guidance import TextCond
from s4s_export.families.scheduler_grid import solver_for_scheduler
from s4s_export.sampler import Sampler

from .tiny import SD_SCHEDULER, diffusers, tiny_dit_pipeline, tiny_sd3_pipeline, tiny_sd_pipeline, tiny_sdxl_pipeline


class Ref:
    def __init__(self, target: str):
        self.target, self.checkpoint, self.random_weights, self.config = target, None, False, None


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


SD_CASES = [
    ("EulerDiscreteScheduler", dict(timestep_spacing="leading", steps_offset=1), "euler", "epsilon"),
    ("EulerDiscreteScheduler", dict(timestep_spacing="trailing"), "euler", "v_prediction"),
    ("DPMSolverMultistepScheduler", dict(), "dpmpp2m", "epsilon"),
    ("DPMSolverMultistepScheduler", dict(), "dpmpp2m", "v_prediction"),
]


@pytest.mark.parametrize("scheduler_class, options, solver, prediction", SD_CASES)
def test_sd_pipeline_matches(tmp_path, scheduler_class, options, solver, prediction):
    scheduler = getattr(diffusers, scheduler_class)(**SD_SCHEDULER, prediction_type=prediction, **options)
    pipe = tiny_sd_pipeline(scheduler)
    pipe.save_pretrained(tmp_path)
    gen = torch.Generator().manual_seed(0)
    latents, embeds, negative = torch.randn(2, 4, 16, 16, generator=gen), torch.randn(2, 7, 8, generator=gen), \
        torch.randn(2, 7, 8, generator=gen)
    expected = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, latents=latents, num_inference_steps=6,
                    guidance_scale=7.5, output_type="latent", height=32, width=32).images
    model = load_diffusers(Ref(str(tmp_path)), guidance_scale=7.5)
    assert model.info.space == "vp" and model.info.sigma_max == pytest.approx(14.6146, rel=1e-4)
    table = solver_for_scheduler(pipe.scheduler, solver)
    ours = Sampler(model, table)(latents, TextCond(embeds, negative))
    assert rel_err(ours, expected) < 1e-4


def test_flow_pipeline_matches(tmp_path):
    pipe = tiny_sd3_pipeline(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.save_pretrained(tmp_path)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 16, 16, generator=gen)
    embeds, negative = torch.randn(2, 5, 32, generator=gen), torch.randn(2, 5, 32, generator=gen)
    pooled, negative_pooled = torch.randn(2, 64, generator=gen), torch.randn(2, 64, generator=gen)
    expected = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, pooled_prompt_embeds=pooled,
                    negative_pooled_prompt_embeds=negative_pooled, latents=latents, num_inference_steps=5,
                    guidance_scale=7.5, output_type="latent", height=32, width=32).images
    model = load_diffusers(Ref(str(tmp_path)), guidance_scale=7.5)
    assert model.info.space == "flow" and model.info.sigma_max == float("inf")
    table = solver_for_scheduler(pipe.scheduler, "euler")
    assert table.sigma_start == float("inf") and table.sigma_end == 0.0
    ours = Sampler(model, table)(latents, TextCond(embeds, negative, pooled, negative_pooled))
    assert rel_err(ours, expected) < 1e-4


def test_sdxl_pipeline_matches(tmp_path):
    """SDXL's pooled embeddings and micro-conditioning time ids (added_cond_kwargs), with guidance."""
    scheduler = diffusers.EulerDiscreteScheduler(**SD_SCHEDULER, timestep_spacing="leading", steps_offset=1)
    pipe = tiny_sdxl_pipeline(scheduler)
    pipe.save_pretrained(tmp_path)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 16, 16, generator=gen)
    embeds, negative = torch.randn(2, 5, 64, generator=gen), torch.randn(2, 5, 64, generator=gen)
    pooled, negative_pooled = torch.randn(2, 32, generator=gen), torch.randn(2, 32, generator=gen)
    expected = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, pooled_prompt_embeds=pooled,
                    negative_pooled_prompt_embeds=negative_pooled, latents=latents, num_inference_steps=5,
                    guidance_scale=7.5, output_type="latent", height=32, width=32).images
    model = load_diffusers(Ref(str(tmp_path)), guidance_scale=7.5)
    time_ids = torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]] * 2)  # original size, crop top-left, target size
    ours = Sampler(model, solver_for_scheduler(pipe.scheduler, "euler"))(
        latents, TextCond(embeds, negative, pooled, negative_pooled, time_ids))
    assert rel_err(ours, expected) < 1e-4


def test_dit_pipeline_matches_decoded(tmp_path):
    """Class-conditional DiT (learned-sigma channels dropped, null class 1000), guidance 4, decoded images."""
    pipe = tiny_dit_pipeline(diffusers.DPMSolverMultistepScheduler(beta_schedule="linear"))
    pipe.save_pretrained(tmp_path)
    labels = [3, 999]
    expected = pipe(labels, guidance_scale=4.0, generator=torch.Generator().manual_seed(0), num_inference_steps=5,
                    output_type="pt").images
    model = load_diffusers(Ref(str(tmp_path)), guidance_scale=4.0)
    assert (model.info.conditioning == "class" and model.info.num_classes == 1000
            and model.info.decodes_to == (3, 16, 16))
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    z = Sampler(model, solver_for_scheduler(pipe.scheduler, "dpmpp2m"))(latents, torch.tensor(labels))  # null: 1000
    ours = (model.decoder(z) / 2 + 0.5).clamp(0, 1)
    assert rel_err(ours, expected) < 1e-4
