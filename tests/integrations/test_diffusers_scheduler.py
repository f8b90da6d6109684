"""S4SScheduler inside diffusers' own pipelines: classical tables against diffusers' schedulers, learned
tables against our Sampler, the config round trip, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
import torch
from integration_tables import learned_like
from tiny_pipelines import (
    SD_SCHEDULER,
    ddpm_pipeline,
    dit_pipeline,
    saved_model,
    sd3_pipeline,
    sd_pipeline,
)

from s4s_export.errors import S4SError
from s4s_export.families.guidance import TextCond
from s4s_export.integrations.diffusers_scheduler import S4SScheduler
from s4s_export.sampler import Sampler
from s4s_export.solverfile import SolverFile, save_solver_file
from s4s_export.solvers import make_solver

LATENT = (4, 16, 16)


def gen(seed):
    return torch.Generator().manual_seed(seed)


EMB, NEG = torch.randn(2, 5, 8, generator=gen(1)), torch.randn(2, 5, 8, generator=gen(2))
LATENTS = torch.randn(2, *LATENT, generator=gen(3))


def run_sd(pipe, steps, guidance):
    return pipe(prompt_embeds=EMB, negative_prompt_embeds=NEG, latents=LATENTS, num_inference_steps=steps,
                guidance_scale=guidance, output_type="latent", height=32, width=32).images


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def scheduler_for(table, config, model_info=None, tmp_path=None):
    info = {"method": table.name, **({"model": model_info} if model_info else {})}
    return S4SScheduler.from_solver_file(SolverFile(table, info), config)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("ours,theirs", [("euler", "EulerDiscreteScheduler"),
                                         ("dpmpp2m", "DPMSolverMultistepScheduler")])
@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_classical_table_equals_diffusers_scheduler(prediction, ours, theirs, guidance):
    """Independent check: our euler / dpmpp2m tables on the scheduler's grid, run by S4SScheduler in the SD
    pipeline, give diffusers' own EulerDiscrete / DPMSolverMultistep final latents."""
    reference = getattr(diffusers, theirs)(**SD_SCHEDULER, prediction_type=prediction)
    pipe = sd_pipeline(reference)
    expected = run_sd(pipe, 5, guidance)
    grid = reference.sigmas.double().numpy()
    # EulerDiscrete keeps x = x0 + sigma eps (latents * init_noise_sigma); DPM-Solver starts at unit VP latents.
    start = reference.init_noise_sigma / np.sqrt(1 + grid[0] ** 2) if ours == "euler" else 1.0
    table = make_solver(ours, 5, grid.tolist(), space="vp", start_scale=float(start))
    pipe.scheduler = scheduler_for(table, reference.config)
    got = run_sd(pipe, 5, guidance)
    assert rel(got, expected) < 1e-4


SD_SIGMAS = (0.029167, 14.614647)  # the SD schedule's sigma range


def sd_model_table(prediction):
    cfg = {**SD_SCHEDULER, "prediction_type": prediction}
    return cfg, learned_like(make_solver("dpmpp2m", 4, "logsnr", *SD_SIGMAS), seed=1)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_learned_table_in_sd_pipeline_equals_sampler(tmp_path, prediction, guidance):
    cfg, table = sd_model_table(prediction)
    pipe = sd_pipeline(diffusers.EulerDiscreteScheduler(**cfg))
    den = saved_model(pipe, tmp_path / "sd", guidance)
    path = save_solver_file(tmp_path / "s.json", SolverFile(table, {"method": "s4s-alt", "model": den.identity_dict()}))
    pipe.scheduler = S4SScheduler.from_solver_file(path, pipe.scheduler.config, model=den)
    got = run_sd(pipe, 4, guidance)
    with torch.no_grad():
        expected = Sampler(den, table)(LATENTS, TextCond(EMB, NEG if guidance != 1.0 else None))
    assert rel(got, expected) < 1e-5


def test_vp_space_table_equals_sampler_to_sigma_zero(tmp_path):
    """A table in the model's space ending at sigma 0 (a final denoise), learned-like, guidance 7.5."""
    cfg = {**SD_SCHEDULER, "prediction_type": "epsilon"}
    grid = [*make_solver("dpmpp2m", 4, "logsnr", *SD_SIGMAS).sigmas[:-1], 0.0]
    table = learned_like(make_solver("dpmpp2m", 4, grid, space="vp", start_scale=1.0), seed=2)
    pipe = sd_pipeline(diffusers.EulerDiscreteScheduler(**cfg))
    den = saved_model(pipe, tmp_path / "sd", 7.5)
    pipe.scheduler = scheduler_for(table, cfg)
    assert pipe.scheduler.init_noise_sigma == pytest.approx(table.table[0, 0])
    got = run_sd(pipe, 4, 7.5)
    with torch.no_grad():
        expected = Sampler(den, table)(LATENTS, TextCond(EMB, NEG))
    assert rel(got, expected) < 1e-5


def last_step(pipe, **call):
    """The pipeline's final latents before it decodes and clamps them: the last step's prev_sample."""
    seen = []
    step = pipe.scheduler.step

    def spy(*a, **k):
        out = step(*a, **k)
        seen.append(out.prev_sample if hasattr(out, "prev_sample") else out[0])
        return out

    pipe.scheduler.step = spy
    pipe(**call)
    return seen[-1]


def ddpm_run(pipe, steps, seed=0):
    return last_step(pipe, batch_size=2, generator=gen(seed), num_inference_steps=steps, output_type="np")


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_dit_pipeline_dpm_table_equals_diffusers(guidance):
    """Class-conditional DiT: the pipeline guides eps and steps the doubled batch; dpmpp2m vs DPM-Solver++(2M)."""
    reference = diffusers.DPMSolverMultistepScheduler()
    pipe = dit_pipeline(reference)
    call = {"class_labels": [3, 7], "guidance_scale": guidance, "num_inference_steps": 5, "output_type": "np"}
    expected = last_step(pipe, generator=gen(9), **call)
    table = make_solver("dpmpp2m", 5, reference.sigmas.double().tolist(), space="vp", start_scale=1.0)
    pipe.scheduler = scheduler_for(table, reference.config)
    assert rel(last_step(pipe, generator=gen(9), **call), expected) < 1e-4


def test_pixel_ddpm_pipeline_dpm_table_equals_diffusers():
    """UNet2DModel in DDPMPipeline (unit noise, no init_noise_sigma): dpmpp2m vs DPMSolverMultistepScheduler."""
    reference = diffusers.DPMSolverMultistepScheduler()
    pipe = ddpm_pipeline(reference)
    expected = ddpm_run(pipe, 5)
    reference.set_timesteps(5)
    table = make_solver("dpmpp2m", 5, reference.sigmas.double().tolist(), space="vp", start_scale=1.0)
    pipe.scheduler = scheduler_for(table, reference.config)
    assert rel(ddpm_run(pipe, 5), expected) < 1e-4


def test_pixel_ddpm_pipeline_learned_table_equals_sampler(tmp_path):
    pipe = ddpm_pipeline(diffusers.DDPMScheduler())
    cfg = dict(pipe.scheduler.config)
    den = saved_model(pipe, tmp_path / "ddpm")
    table = learned_like(make_solver("dpmpp2m", 4, "logsnr", den.info.sigma_min, den.info.sigma_max), seed=3)
    pipe.scheduler = scheduler_for(table, cfg)
    got = ddpm_run(pipe, 4, seed=5)
    z = torch.randn(2, 3, 16, 16, generator=gen(5))  # DDPMPipeline's own noise; it skips init_noise_sigma
    with torch.no_grad():
        expected = Sampler(den, table)(z / pipe.scheduler.init_noise_sigma)
    assert rel(got, expected) < 1e-5


def test_save_pretrained_round_trip_is_exact(tmp_path):
    cfg, table = sd_model_table("v_prediction")
    sched = S4SScheduler.from_solver_file(SolverFile(table, {"method": "s4s-alt", "validation": {"val": 0.25}}), cfg)
    sched.save_pretrained(tmp_path / "scheduler")
    back = S4SScheduler.from_pretrained(tmp_path / "scheduler")
    assert dict(back.config) == dict(sched.config)
    assert np.array_equal(back.table.table, table.table) and np.array_equal(back.table.eval_sigmas, table.eval_sigmas)
    assert np.array_equal(back.table.sigmas, table.sigmas) and torch.equal(back.timesteps, sched.timesteps)
    assert back.config.provenance["validation"] == {"val": 0.25}
    pipe = sd_pipeline(sched)
    first = run_sd(pipe, 4, 7.5)
    pipe.scheduler = back
    assert torch.equal(run_sd(pipe, 4, 7.5), first)


def one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_nfe_mismatch_is_one_line_error():
    cfg, table = sd_model_table("epsilon")
    pipe = sd_pipeline(scheduler_for(table, cfg))
    with pytest.raises(S4SError, match=r"exactly 4 steps .* num_inference_steps=4, not 10") as e:
        run_sd(pipe, 10, 1.0)
    one_line(e)


def test_solver_for_another_model_is_refused(tmp_path):
    # sigmas 0.002..80 (an EDM model's range) are outside SD's 0.0292..14.61
    edm_table = make_solver("dpmpp2m", 4, "edm", 0.002, 80.0)
    with pytest.raises(S4SError, match="learned for another model") as e:
        scheduler_for(edm_table, SD_SCHEDULER)
    one_line(e)
    cfg, table = sd_model_table("epsilon")
    other = {"name": "demo", "weights_sha256": "0" * 64, "shape": [1, 16, 16]}
    path = save_solver_file(tmp_path / "s.json", SolverFile(table, {"method": "s4s-alt", "model": other}))
    with pytest.raises(S4SError, match="was learned for model 'demo'") as e:
        S4SScheduler.from_solver_file(path, cfg, model=saved_model(sd_pipeline(diffusers.DDPMScheduler(**cfg)),
                                                                   tmp_path / "sd"))
    one_line(e)
    pipe = sd_pipeline(S4SScheduler.from_solver_file(path, cfg))  # no model given: the latents' shape still differs
    with pytest.raises(S4SError, match=r"learned for model 'demo' with latents \[1, 16, 16\]") as e:
        run_sd(pipe, 4, 1.0)
    one_line(e)


def test_unservable_prediction_types_are_refused():
    _, table = sd_model_table("epsilon")
    with pytest.raises(S4SError, match="prediction_type 'learned_range'") as e:
        scheduler_for(table, {**SD_SCHEDULER, "prediction_type": "learned_range"})
    one_line(e)
    sched = scheduler_for(table, SD_SCHEDULER)
    sched.set_timesteps(4)
    x = torch.zeros(1, *LATENT)
    with pytest.raises(S4SError, match="learned variance") as e:  # a network with 2C output channels
        sched.step(torch.zeros(1, 8, 16, 16), sched.timesteps[0], x)
    one_line(e)


def test_custom_timesteps_and_img2img_are_refused():
    cfg, table = sd_model_table("epsilon")
    sched = scheduler_for(table, cfg)
    with pytest.raises(S4SError, match="custom timesteps or sigmas"):
        sched.set_timesteps(4, sigmas=[1.0, 0.5, 0.2, 0.1])
    with pytest.raises(S4SError, match="runs from its first step"):
        sched.set_begin_index(2)


def test_add_noise_equals_ddpm_scheduler():
    """At eval sigmas on integer timesteps, add_noise is DDPMScheduler's sqrt(ab) x0 + sqrt(1 - ab) eps."""
    from s4s_export.families.vp import VPSchedule

    sig = VPSchedule.from_config(SD_SCHEDULER).sigmas
    grid = [sig[999], sig[500], sig[100], sig[10]]
    table = make_solver("euler", 3, grid, space="vp")
    sched = scheduler_for(table, SD_SCHEDULER)
    sched.set_timesteps(3)
    assert sched.timesteps.tolist() == pytest.approx([999, 500, 100], abs=1e-3)
    x0, eps = torch.randn(3, *LATENT, generator=gen(7)), torch.randn(3, *LATENT, generator=gen(8))
    expected = diffusers.DDPMScheduler(**SD_SCHEDULER).add_noise(x0, eps, torch.tensor([999, 500, 100]))
    assert torch.allclose(sched.add_noise(x0, eps, sched.timesteps), expected, rtol=1e-5, atol=1e-5)


EMB3, NEG3 = torch.randn(2, 5, 32, generator=gen(11)), torch.randn(2, 5, 32, generator=gen(12))
POOLED, NEG_POOLED = torch.randn(2, 64, generator=gen(13)), torch.randn(2, 64, generator=gen(14))


def run_sd3(pipe, steps, guidance):
    return pipe(prompt_embeds=EMB3, negative_prompt_embeds=NEG3, pooled_prompt_embeds=POOLED,
                negative_pooled_prompt_embeds=NEG_POOLED, latents=LATENTS, num_inference_steps=steps,
                guidance_scale=guidance, output_type="latent", height=32, width=32).images


def flow_grid(steps: int) -> list[float]:
    """FlowMatchEuler's grid (shift 3) as sigma = t / (1 - t): from inf to 0."""
    reference = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    reference.set_timesteps(steps)
    t = reference.sigmas.double().numpy()
    with np.errstate(divide="ignore"):
        return np.where(t >= 1, np.inf, t / (1 - t)).tolist()


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_flow_euler_table_equals_flowmatch_euler(guidance):
    """Independent check: our euler table on FlowMatchEuler's grid in the SD3 pipeline gives diffusers' latents."""
    reference = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = sd3_pipeline(reference)
    expected = run_sd3(pipe, 5, guidance)
    table = make_solver("euler", 5, flow_grid(5), space="flow", start_scale=1.0)
    pipe.scheduler = scheduler_for(table, reference.config)
    assert pipe.scheduler.timesteps.tolist() == pytest.approx(reference.timesteps.tolist(), rel=1e-5)
    assert rel(run_sd3(pipe, 5, guidance), expected) < 1e-4


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_flow_learned_table_equals_sampler(tmp_path, guidance):
    """A learned-like flow table starting at sigma = inf (t = 1) in the SD3 pipeline equals Sampler."""
    pipe = sd3_pipeline(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    den = saved_model(pipe, tmp_path / "sd3", guidance)
    table = learned_like(make_solver("dpmpp2m", 5, flow_grid(5), space="flow", start_scale=1.0), seed=4)
    path = save_solver_file(tmp_path / "s.json", SolverFile(table, {"method": "s4s-alt", "model": den.identity_dict()}))
    pipe.scheduler = S4SScheduler.from_solver_file(path, pipe.scheduler.config, model=den)
    got = run_sd3(pipe, 5, guidance)
    z = LATENTS / pipe.scheduler.init_noise_sigma  # the SD3 pipeline skips init_noise_sigma: its latents are the start
    with torch.no_grad():
        expected = Sampler(den, table)(z, TextCond(EMB3, NEG3 if guidance != 1.0 else None, POOLED,
                                                         NEG_POOLED if guidance != 1.0 else None))
    assert rel(got, expected) < 1e-5


def test_vp_table_on_a_flow_model_is_refused():
    table = make_solver("dpmpp2m", 4, [*make_solver("euler", 4, "logsnr", 0.03, 14.6).sigmas[:-1], 0.0], space="vp")
    with pytest.raises(S4SError, match="model space 'vp', this pipeline's model in 'flow'") as e:
        scheduler_for(table, diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config)
    one_line(e)


def test_half_precision_latents_step_in_float32():
    """fp16 / bf16 latents: the step runs in float32 and returns the latents' dtype, within that dtype's rounding."""
    cfg, table = sd_model_table("epsilon")
    x = torch.randn(2, *LATENT, generator=gen(20))
    out = torch.randn(2, *LATENT, generator=gen(21))
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        sched = scheduler_for(table, cfg)
        sched.set_timesteps(4)
        prev = sched.step(out.to(dtype), sched.timesteps[0], x.to(dtype)).prev_sample
        assert prev.dtype == dtype
        results[dtype] = prev.float()
    assert rel(results[torch.bfloat16], results[torch.float32]) < 2e-2
