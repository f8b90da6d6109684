"""Latent and text-conditioned graphs (export/latent_graph.py) on tiny random diffusers pipelines: the built graph
in ONNX Runtime against an independent PyTorch path (our Sampler with the denoiser's own guidance scale, then the
pipeline's VAE), at NFE 4, guidance 1 and 7.5, batch 1 and 3. One export per model (dynamic batch 1..3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from s4s_export.contract import (
    GUIDANCE,
    IMAGES,
    LABELS,
    LATENTS,
    NEGATIVE_POOLED_EMBEDS,
    NEGATIVE_PROMPT_EMBEDS,
    NOISE,
    POOLED_EMBEDS,
    PROMPT_EMBEDS,
    TIME_IDS,
)
from s4s_export.errors import S4SError
from s4s_export.export.build import BuildRequest, Resolved, build_onnx
from s4s_export.export.verify import cpu_runner, relative_error
from s4s_export.families.diffusers_folder import load_diffusers
from s4s_export.families.guidance import ClassCond, TextCond
from s4s_export.families.scheduler_grid import solver_for_scheduler
from s4s_export.sampler import Sampler
from s4s_export.solver_ref import resolve_solver

tiny = pytest.importorskip("families.tiny", reason="the diffusers extra is not installed")
diffusers = tiny.diffusers

NFE = 4
LIMIT = 1e-4  # fp32, the acceptance limit


class Ref:
    def __init__(self, target: str):
        self.target, self.checkpoint, self.random_weights, self.config = target, None, False, None


def _built(tmp_path_factory, name: str, pipeline, solver, decode: bool = True, batch=(1, 3), text_encoder=False):
    folder = tmp_path_factory.mktemp(name)
    pipeline.save_pretrained(folder)
    model = load_diffusers(Ref(str(folder)))
    table = solver(pipeline, model)
    req = BuildRequest(out=str(folder / "graphs"), batch=batch, decode=decode,
                       text_encoder=str(folder) if text_encoder else None)
    result = build_onnx(req, resolved=Resolved(model, table, {"kind": "test"}))
    return folder, table, result


def _grid_solver(name: str):
    def solver(pipeline, model):
        pipeline.scheduler.set_timesteps(NFE)
        return solver_for_scheduler(pipeline.scheduler, name)
    return solver


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """The tiny SD pipeline with a tiny CLIP text encoder, built with --text-encoder."""
    scheduler = diffusers.DPMSolverMultistepScheduler(**tiny.SD_SCHEDULER)
    encoder, tokenizer = tiny.tiny_clip(tmp_path_factory.mktemp("clip"))
    components = {**tiny.tiny_sd_pipeline(scheduler).components, "text_encoder": encoder, "tokenizer": tokenizer}
    pipeline = diffusers.StableDiffusionPipeline(**components, requires_safety_checker=False)
    return _built(tmp_path_factory, "sd", pipeline, _grid_solver("dpmpp2m"), text_encoder=True)


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    return _built(tmp_path_factory, "sd3", tiny.tiny_sd3_pipeline(scheduler), _grid_solver("euler"))


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    def solver(pipeline, model):  # a classical table on the model's own sigma range (VE space)
        return resolve_solver("dpmpp2m", denoiser=model, nfe=NFE, schedule="logsnr").table
    return _built(tmp_path_factory, "dit", tiny.tiny_dit_pipeline(diffusers.DDIMScheduler()), solver)


def _text_inputs(batch: int, length: int, dim: int, pooled: int = 0, seed: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {NOISE: torch.randn(batch, 4, 16, 16, generator=g),
           PROMPT_EMBEDS: torch.randn(batch, length, dim, generator=g),
           NEGATIVE_PROMPT_EMBEDS: torch.randn(batch, length, dim, generator=g)}
    if pooled:
        out[POOLED_EMBEDS] = torch.randn(batch, pooled, generator=g)
        out[NEGATIVE_POOLED_EMBEDS] = torch.randn(batch, pooled, generator=g)
    return out


def _reference(folder, table, feeds: dict[str, torch.Tensor], scale: float, decode: bool = True,
               load=lambda folder, scale: load_diffusers(Ref(str(folder)), guidance_scale=scale)) -> np.ndarray:
    """Our Sampler with the denoiser's own (float) guidance scale, then the VAE: no graph code involved."""
    model = load(folder, scale)
    if LABELS in feeds:
        cond = ClassCond(feeds[LABELS], model.info.num_classes)
    else:
        cond = TextCond(feeds[PROMPT_EMBEDS], feeds[NEGATIVE_PROMPT_EMBEDS], feeds.get(POOLED_EMBEDS),
                        feeds.get(NEGATIVE_POOLED_EMBEDS), feeds.get(TIME_IDS))
    with torch.no_grad():
        z = Sampler(model, table)(feeds[NOISE], cond)
        return (model.decoder(z).clamp(-1, 1) if decode else z).numpy()


def _run(result, feeds: dict[str, torch.Tensor], scale: float) -> np.ndarray:
    batch = feeds[NOISE].shape[0]
    with cpu_runner(result.onnx_path) as runner:
        return runner.infer({**{k: v.numpy() for k, v in feeds.items()},
                             GUIDANCE: np.full(batch, scale, np.float32)})


@pytest.mark.parametrize("scale", [1.0, 7.5])
@pytest.mark.parametrize("batch", [1, 3])
def test_sd_graph_matches_sampler_and_decoder(sd, batch, scale):
    folder, table, result = sd
    feeds = _text_inputs(batch, 77, 8)
    ours = _run(result, feeds, scale)
    assert ours.shape == (batch, 3, 32, 32)
    assert relative_error(ours, _reference(folder, table, feeds, scale)) <= LIMIT


def test_sd_build_verified_and_described(sd):
    _, _, result = sd
    assert result.verification.ok
    ort_check = next(c for c in result.verification.checks if c.name.startswith("ORT"))
    assert "guidance scales 1, 7.5" in ort_check.detail
    doc = json.loads(result.sidecar.read_text())
    names = [i["name"] for i in doc["inputs"]]
    assert names == [NOISE, PROMPT_EMBEDS, NEGATIVE_PROMPT_EMBEDS, GUIDANCE]
    assert doc["inputs"][1]["shape"] == ["batch", 77, 8] and doc["inputs"][-1]["shape"] == ["batch"]
    assert doc["outputs"] == [{"name": IMAGES, "dtype": "float32", "shape": ["batch", 3, 32, 32], "layout": "NCHW",
                               "range": [-1, 1]}]
    assert doc["text_length"] == 77 and doc["model"]["decodes_to"] == [3, 32, 32]


def test_per_sample_guidance_scale(sd):
    """Each sample has its own scale: a mixed batch equals the samples run at their own scales."""
    _, _, result = sd
    feeds = _text_inputs(2, 77, 8)
    with cpu_runner(result.onnx_path) as runner:
        np_feeds = {k: v.numpy() for k, v in feeds.items()}
        mixed = runner.infer({**np_feeds, GUIDANCE: np.array([7.5, 1.0], np.float32)})
        guided = runner.infer({**np_feeds, GUIDANCE: np.full(2, 7.5, np.float32)})
        plain = runner.infer({**np_feeds, GUIDANCE: np.full(2, 1.0, np.float32)})
    np.testing.assert_allclose(mixed[0], guided[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], plain[1], atol=1e-5)
    assert np.abs(guided - plain).max() > 1e-3


@pytest.mark.parametrize("scale", [1.0, 7.5])
@pytest.mark.parametrize("batch", [1, 3])
def test_flow_transformer_graph_matches(sd3, batch, scale):
    folder, table, result = sd3
    feeds = _text_inputs(batch, 77, 32, pooled=64)
    assert relative_error(_run(result, feeds, scale), _reference(folder, table, feeds, scale)) <= LIMIT


@pytest.mark.parametrize("scale", [1.0, 7.5])
@pytest.mark.parametrize("batch", [1, 3])
def test_class_conditional_dit_graph_matches(dit, batch, scale):
    folder, table, result = dit
    g = torch.Generator().manual_seed(3)
    feeds = {NOISE: torch.randn(batch, 4, 8, 8, generator=g),
             LABELS: torch.tensor([7, 999, 1000][:batch], dtype=torch.int64)}
    assert relative_error(_run(result, feeds, scale), _reference(folder, table, feeds, scale)) <= LIMIT
    doc = json.loads(result.sidecar.read_text())
    assert [i["name"] for i in doc["inputs"]] == [NOISE, LABELS, GUIDANCE] and doc["num_classes"] == 1000


def test_no_decode_outputs_latents(tmp_path_factory):
    scheduler = diffusers.DPMSolverMultistepScheduler(**tiny.SD_SCHEDULER)
    folder, table, result = _built(tmp_path_factory, "sd-latents", tiny.tiny_sd_pipeline(scheduler),
                                   _grid_solver("dpmpp2m"), decode=False, batch=(2, 2))
    assert result.onnx_path.name.endswith("-latents.onnx")
    doc = json.loads(result.sidecar.read_text())
    assert doc["outputs"][0]["name"] == LATENTS and doc["outputs"][0]["shape"] == [2, 4, 16, 16]
    feeds = _text_inputs(2, 77, 8)
    ours = _run(result, feeds, 7.5)
    assert relative_error(ours, _reference(folder, table, feeds, 7.5, decode=False)) <= LIMIT


def test_python_runtime_and_sample_command_take_embeddings(sd, tmp_path):
    """The same images from the build's runner, the Python runtime (Sampler) and `s4s-export sample`."""
    from typer.testing import CliRunner

    from s4s_export.cli import app
    from s4s_export.runtime import Sampler, make_grid, png_bytes, seeded_noise, to_uint8
    from s4s_export.runtime.images import enlarge

    _, _, result = sd
    feeds = _text_inputs(1, 77, 8)
    embeds, negative = feeds[PROMPT_EMBEDS][0].numpy(), feeds[NEGATIVE_PROMPT_EMBEDS][0].numpy()
    noise = seeded_noise((4, 16, 16), 3, 11)
    with Sampler.load(result.onnx_path, providers=["cpu"]) as sampler:
        assert sampler.text and not sampler.conditional
        images = sampler(seed=11, n=3, prompt_embeds=embeds, negative_prompt_embeds=negative, guidance_scale=7.5)
        with pytest.raises(S4SError, match="negative_prompt_embeds .* is missing"):
            sampler(seed=0, prompt_embeds=embeds, guidance_scale=7.5)
        unguided = sampler(seed=11, n=1, prompt_embeds=embeds)  # scale 1: no negative embeddings needed
        with pytest.raises(S4SError, match="prompt_embeds must have shape"):
            sampler(seed=0, prompt_embeds=embeds[:, :4], negative_prompt_embeds=negative, guidance_scale=2.0)
    with cpu_runner(result.onnx_path) as runner:
        direct = runner.infer({NOISE: noise, PROMPT_EMBEDS: np.repeat(embeds[None], 3, 0),
                               NEGATIVE_PROMPT_EMBEDS: np.repeat(negative[None], 3, 0),
                               GUIDANCE: np.full(3, 7.5, np.float32)})
    np.testing.assert_array_equal(images, direct)
    assert np.abs(unguided[0] - images[0]).max() > 1e-3
    np.save(tmp_path / "embeds.npy", embeds)
    np.save(tmp_path / "negative.npy", negative)
    out = tmp_path / "grid.png"
    cli = CliRunner().invoke(app, ["sample", str(result.onnx_path), "--n", "3", "--seed", "11", "--guidance-scale",
                                   "7.5", "--prompt-embeds", str(tmp_path / "embeds.npy"), "--negative-prompt-embeds",
                                   str(tmp_path / "negative.npy"), "--out", str(out), "--ncol", "3"])
    assert cli.exit_code == 0, cli.output
    assert out.read_bytes() == png_bytes(enlarge(make_grid(to_uint8(images), 3)))  # grids are enlarged to >= 256 px
    missing = CliRunner().invoke(app, ["sample", str(result.onnx_path), "--out", str(tmp_path / "x.png")])
    assert isinstance(missing.exception, S4SError) and "--prompt-embeds FILE" in str(missing.exception)


def test_triton_repository_batches_text_graphs(sd, tmp_path):
    """Per-sample guidance_scale [B]: every input is batched, so Triton gets dynamic batching."""
    from s4s_export.runtime import write_triton_repository

    _, _, result = sd
    text = (write_triton_repository(result.onnx_path, tmp_path / "repo", name="sd", max_batch=3)
            / "sd" / "config.pbtxt").read_text()
    assert "max_batch_size: 3" in text and "dynamic_batching" in text
    for name, dims in ((PROMPT_EMBEDS, "77, 8"), (NEGATIVE_PROMPT_EMBEDS, "77, 8"), (GUIDANCE, "1")):
        assert f'name: "{name}"' in text and f"dims: [ {dims} ]" in text
    assert "reshape: { shape: [ ] }" in text
    repo = tmp_path / "repo"  # the text encoder beside the graph: an ensemble prompt ids -> embeddings -> images
    encoder = (repo / "sd_text_encoder" / "config.pbtxt").read_text()
    assert "dims: [ 77 ]" in encoder and "dims: [ 77, 8 ]" in encoder and "dynamic_batching" in encoder
    assert (repo / "sd_text_encoder" / "1" / "model.onnx").is_file()
    ensemble = (repo / "sd_ensemble" / "config.pbtxt").read_text()
    assert 'platform: "ensemble"' in ensemble and ensemble.count('model_name: "sd_text_encoder"') == 2
    assert 'value: "negative_input_ids"' in ensemble and 'model_name: "sd"' in ensemble


def test_prompt_through_text_encoder_graph(sd):
    """prompt -> ids (tokenizers) -> embeddings (text encoder graph) -> images, against diffusers' own
    encode_prompt (transformers tokenizer and CLIP in PyTorch) fed to the sampler graph."""
    folder, _, result = sd
    entry = json.loads(result.sidecar.read_text())["text_encoder"]
    assert entry["length"] == 77 and (result.onnx_path.parent / entry["onnx"]).is_file()
    from s4s_export.runtime import Sampler

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    with torch.no_grad():
        embeds, negative = pipe.encode_prompt(["a cat", "cat at"], "cpu", 1, True, None)
    with Sampler.load(result.onnx_path, providers=["cpu"]) as sampler:
        np.testing.assert_allclose(sampler.text_encoder(["a cat", "cat at"])[PROMPT_EMBEDS], embeds.numpy(), rtol=0,
                                   atol=1e-5)
        images = sampler(seed=4, n=2, prompt=["a cat", "cat at"], guidance_scale=7.5)
        expected = sampler(seed=4, n=2, prompt_embeds=embeds.numpy(), negative_prompt_embeds=negative.numpy(),
                           guidance_scale=7.5)
        with pytest.raises(S4SError, match="either prompt or prompt_embeds"):
            sampler(seed=0, prompt="a cat", prompt_embeds=embeds[0].numpy())
    assert np.abs(images - expected).max() <= 1e-5
    from typer.testing import CliRunner

    from s4s_export.cli import app
    from s4s_export.runtime import make_grid, png_bytes, to_uint8
    from s4s_export.runtime.images import enlarge

    out = result.onnx_path.parent / "prompt.png"
    cli = CliRunner().invoke(app, ["sample", str(result.onnx_path), "--n", "2", "--seed", "4", "--prompt", "a cat",
                                   "--guidance-scale", "7.5", "--out", str(out), "--ncol", "2"])
    assert cli.exit_code == 0, cli.output
    with Sampler.load(result.onnx_path, providers=["cpu"]) as sampler:
        one_prompt = sampler(seed=4, n=2, prompt="a cat", guidance_scale=7.5)
    np.testing.assert_allclose(one_prompt[0], images[0], rtol=0, atol=1e-5)
    assert out.read_bytes() == png_bytes(enlarge(make_grid(to_uint8(one_prompt), 2)))


@pytest.fixture(scope="module")
def compvis_vq(tmp_path_factory):
    """A tiny class-conditional CompVis LDM (cin256-v2's layout) with a VQ first stage: quantised decode."""
    from families.compvis_fixture import tiny_compvis_ref

    from s4s_export.families.compvis import load_compvis

    folder = tmp_path_factory.mktemp("compvis")
    ref = tiny_compvis_ref("cin", folder)
    model = load_compvis(ref)
    table = resolve_solver("dpmpp2m", denoiser=model, nfe=NFE, schedule="logsnr").table
    result = build_onnx(BuildRequest(out=str(folder / "graphs"), batch=(1, 3)),
                        resolved=Resolved(model, table, {"kind": "test"}))
    return ref, table, result, lambda ref, scale: load_compvis(ref, guidance_scale=scale)


@pytest.mark.parametrize("scale", [1.0, 7.5])
@pytest.mark.parametrize("batch", [1, 3])
def test_compvis_vq_graph_matches(compvis_vq, batch, scale):
    ref, table, result, load = compvis_vq
    assert type(load(ref, 1.0).decoder.vae).__name__ == "VQModel"
    g = torch.Generator().manual_seed(8)
    feeds = {NOISE: torch.randn(batch, 3, 8, 8, generator=g), LABELS: torch.tensor([3, 9, 10][:batch])}
    ours = _run(result, feeds, scale)
    assert ours.shape == (batch, 3, 16, 16)
    assert relative_error(ours, _reference(ref, table, feeds, scale, load=load)) <= LIMIT


@pytest.mark.slow
def test_sd_graph_at_nfe_6(tmp_path_factory):
    """The acceptance's second NFE: a 6-step DPM-Solver++(2M) SD graph, guidance 1 and 7.5, batch 1 and 3."""
    scheduler = diffusers.DPMSolverMultistepScheduler(**tiny.SD_SCHEDULER)

    def solver(pipeline, model):
        pipeline.scheduler.set_timesteps(6)
        return solver_for_scheduler(pipeline.scheduler, "dpmpp2m")

    folder, table, result = _built(tmp_path_factory, "sd6", tiny.tiny_sd_pipeline(scheduler), solver)
    assert table.nfe == 6
    for batch in (1, 3):
        for scale in (1.0, 7.5):
            feeds = _text_inputs(batch, 77, 8, seed=batch)
            assert relative_error(_run(result, feeds, scale), _reference(folder, table, feeds, scale)) <= LIMIT


def test_bench_baked_graph_against_host_loop_pipeline(sd, tmp_path, capsys):
    """`s4s-export bench` on a latent text model: the baked graph beside Optimum's layout (UNet and VAE sessions,
    diffusers' DPM-Solver++ stepping on the host, CFG by batch doubling) on ORT CPU, same NFE: every field reported,
    the same images, the graphs reused on a second run. No wall time is asserted (a shared 2-core box)."""
    from s4s_export.cli import run

    folder = sd[0]
    args = ["bench", "--model", f"diffusers:{folder}", "--nfe", str(NFE), "--threads", "1", "--repeats", "1",
            "--warmup", "0", "--provider", "cpu", "--graphs", str(tmp_path), "--json"]
    assert run([*args, "--batch", "1,2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "latent" and report["nfe"] == NFE and report["provider"] == "cpu"
    assert report["solver"] == "dpmpp2m" and report["scheduler"] == "DPMSolverMultistepScheduler"
    assert report["graphs"]["reused"] == {"host_loop": False, "baked": False}
    assert [r["batch"] for r in report["rows"]] == [1, 2]
    for r in report["rows"]:
        assert r["max_abs_diff"] <= LIMIT
        assert min(r["baked_ms"], r["host_loop_ms"], r["unet_call_ms"], r["decode_ms"]) > 0
        calls = NFE * r["unet_call_ms"] + r["decode_ms"]
        assert r["overhead"] == pytest.approx(r["baked_ms"] / calls)
        assert r["host_overhead"] == pytest.approx(r["host_loop_ms"] / calls)
        assert r["host_over_baked"] == pytest.approx(r["host_loop_ms"] / r["baked_ms"])
    assert run([*args[:-1], "--batch", "1", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert "| 1 |" in table and "baked graph against the host-loop pipeline" in table and "load average" in table
    assert run([*args, "--batch", "1", "--solver", "euler"]) == 0  # Euler replayed on EulerDiscreteScheduler
    euler = json.loads(capsys.readouterr().out)
    assert euler["graphs"]["reused"] == {"host_loop": True, "baked": False}
    assert euler["rows"][0]["max_abs_diff"] <= LIMIT
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["baked-dpmpp2m-nfe4.onnx", "baked-euler-nfe4.onnx"]


@pytest.mark.parametrize(("args", "message"), [
    (["--solver", "dpmpp3m"], "--solver takes dpmpp2m or euler; got 'dpmpp3m'"),
    (["--backend", "pytorch"], "add onnxruntime to --backend"),
    (["--provider", "tpu"], "--provider takes cpu or cuda; got 'tpu'"),
])
def test_bench_latent_bad_input_is_one_line(sd, args, message, capsys):
    from s4s_export.cli import run

    assert run(["bench", "--model", f"diffusers:{sd[0]}", "--nfe", str(NFE), "--batch", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_bench_latent_options_refused_for_pixel_models(capsys):
    from s4s_export.cli import run

    assert run(["bench", "--model", "gmm", "--nfe", "3", "--batch", "1", "--provider", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --provider and --graphs apply to latent models (the host-loop comparison); drop them"


@pytest.mark.slow
def test_sdxl_graph_takes_pooled_embeddings_and_time_ids(tmp_path_factory):
    """SDXL's added conditions as graph inputs (pooled [B, 32], add_time_ids [B, 6]), guided, batch 2."""
    scheduler = diffusers.EulerDiscreteScheduler(**tiny.SD_SCHEDULER, timestep_spacing="leading", steps_offset=1)
    folder, table, result = _built(tmp_path_factory, "sdxl", tiny.tiny_sdxl_pipeline(scheduler),
                                   _grid_solver("euler"), batch=(2, 2))
    doc = json.loads(result.sidecar.read_text())
    assert [i["name"] for i in doc["inputs"]] == [NOISE, PROMPT_EMBEDS, NEGATIVE_PROMPT_EMBEDS, POOLED_EMBEDS,
                                                  NEGATIVE_POOLED_EMBEDS, TIME_IDS, GUIDANCE]
    feeds = _text_inputs(2, 77, 64, pooled=32)
    feeds[TIME_IDS] = torch.tensor([[32.0, 32, 0, 0, 32, 32]] * 2)
    assert relative_error(_run(result, feeds, 7.5), _reference(folder, table, feeds, 7.5)) <= LIMIT
    from s4s_export.runtime import Sampler

    with Sampler.load(result.onnx_path, providers=["cpu"]) as sampler:  # add_time_ids default to (H, W, 0, 0, H, W)
        defaulted = sampler(noise=feeds[NOISE].numpy(), guidance_scale=7.5,
                            **{k: v.numpy() for k, v in feeds.items() if k not in (NOISE, TIME_IDS)})
    np.testing.assert_allclose(defaulted, _run(result, feeds, 7.5), rtol=0, atol=1e-6)
