"""`build --text-encoder` for SDXL (two CLIPs, pooled) and SD3 (two CLIPs + T5, or zeros without T5) on tiny random
pipelines (diffusers' test configs, tokenizers built offline): the graph on the tokenizers' ids against diffusers' own
`encode_prompt` (every output, 1e-5), and images from the Python runtime with `prompt=` against our PyTorch
Sampler fed the pipeline's embeddings (1e-4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_export_latent import Ref, _reference

from s4s_export.contract import (
    GUIDANCE,
    NEGATIVE_POOLED_EMBEDS,
    NEGATIVE_PROMPT_EMBEDS,
    NOISE,
    POOLED_EMBEDS,
    PROMPT_EMBEDS,
    TIME_IDS,
)
from s4s_export.errors import S4SError
from s4s_export.export.build import BuildRequest, Resolved, build_onnx
from s4s_export.export.verify import relative_error
from s4s_export.families.diffusers_folder import load_diffusers
from s4s_export.families.scheduler_grid import solver_for_scheduler

tiny = pytest.importorskip("families.tiny", reason="the diffusers extra is not installed")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
diffusers = tiny.diffusers

PROMPTS = ["a cat", "a photograph of an astronaut riding a horse"]
NEGATIVES = ["", "blurry cat"]
LIMIT = 1e-4  # images, fp32 (the acceptance limit)
EMBEDS_ATOL = 1e-5
NFE = 2  # the sampler graphs are the fixtures' cost; their loop is tested at NFE 4 in test_export_latent.py


def clip_tokenizer(folder, pad_token: str = "<|endoftext|>"):
    """A CLIP tokenizer over a tiny BPE vocabulary (letters, end-of-word letters, '!', two merges)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for suffix in ("", "</w>"):
        vocab |= {c + suffix: len(vocab) + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    vocab |= {"at</w>": len(vocab), "cat</w>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\na t</w>\nc at</w>\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77,
                                      pad_token=pad_token)


def clip_encoder(hidden: int, seed: int, projection: int | None = None):
    torch.manual_seed(seed)
    config = transformers.CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden,
                                         intermediate_size=2 * hidden, num_attention_heads=2, num_hidden_layers=3,
                                         vocab_size=57, max_position_embeddings=77,
                                         **({"projection_dim": projection} if projection else {}))
    cls = transformers.CLIPTextModel if projection is None else transformers.CLIPTextModelWithProjection
    return cls(config).eval()


def t5_tokenizer():
    """A T5 (Unigram, sentencepiece-style) tokenizer over a few words and the letters."""
    words = ("a", "cat", "photograph", "of", "an", "astronaut", "riding", "horse", "blurry")
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -2.0) for w in words]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz\u2581"]
    return transformers.T5TokenizerFast(vocab=pieces, extra_ids=0)


def t5_encoder(d_model: int):
    # diffusers' tests use hf-internal-testing/tiny-random-t5 (d_model 32); its shape, written here offline
    torch.manual_seed(7)
    config = transformers.T5Config(vocab_size=39, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, dropout_rate=0.0)
    return transformers.T5EncoderModel(config).eval()


def sdxl_pipeline(tmp):
    # diffusers' tests/pipelines/stable_diffusion_xl: two CLIPs of width 32 (-> cross_attention_dim 64), projection 32
    pipe = tiny.tiny_sdxl_pipeline(diffusers.EulerDiscreteScheduler(**tiny.SD_SCHEDULER))
    return diffusers.StableDiffusionXLPipeline(**{
        **pipe.components, "text_encoder": clip_encoder(32, 2), "tokenizer": clip_tokenizer(tmp / "t1"),
        "text_encoder_2": clip_encoder(32, 3, projection=32),
        "tokenizer_2": clip_tokenizer(tmp / "t2", pad_token="!")})  # SDXL's tokenizer_2 pads with "!"


def sd3_pipeline(tmp, with_t5: bool = True):
    # CLIPs of width 8 and 16 (concatenated 24, padded to T5's 32), projections 32 + 32 = pooled_projection_dim 64
    pipe = tiny.tiny_sd3_pipeline(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    return diffusers.StableDiffusion3Pipeline(**{
        **pipe.components, "text_encoder": clip_encoder(8, 2, projection=32), "tokenizer": clip_tokenizer(tmp / "t1"),
        "text_encoder_2": clip_encoder(16, 3, projection=32), "tokenizer_2": clip_tokenizer(tmp / "t2"),
        "text_encoder_3": t5_encoder(32) if with_t5 else None, "tokenizer_3": t5_tokenizer() if with_t5 else None})


def _build(tmp_path_factory, name, make, text_length: int):
    pipeline = make(tmp_path_factory.mktemp(name + "-tok"))
    folder = tmp_path_factory.mktemp(name)
    pipeline.save_pretrained(folder)
    model = load_diffusers(Ref(str(folder)))
    pipeline.scheduler.set_timesteps(NFE)
    table = solver_for_scheduler(pipeline.scheduler, "euler")
    req = BuildRequest(out=str(folder / "graphs"), batch=(1, 2), text_encoder=str(folder), text_length=text_length)
    result = build_onnx(req, resolved=Resolved(model, table, {"kind": "test"}))
    return folder, table, result


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return _build(tmp_path_factory, "sdxl", sdxl_pipeline, 77)


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return _build(tmp_path_factory, "sd3", sd3_pipeline, 77 + 256)  # diffusers' default max_sequence_length 256


def _encode(cls, folder, negative_prompt):
    absent = {"text_encoder_3": None, "tokenizer_3": None} if cls is diffusers.StableDiffusion3Pipeline and not (
        folder / "text_encoder_3").is_dir() else {}
    pipe = cls.from_pretrained(folder, use_safetensors=True, **absent)
    extra = (None, None) if cls is diffusers.StableDiffusion3Pipeline else ()
    with torch.no_grad():
        out = pipe.encode_prompt(PROMPTS, *extra, device="cpu", num_images_per_prompt=1,
                                 do_classifier_free_guidance=True, negative_prompt=negative_prompt)
    names = (PROMPT_EMBEDS, NEGATIVE_PROMPT_EMBEDS, POOLED_EMBEDS, NEGATIVE_POOLED_EMBEDS)
    return {name: t.numpy() for name, t in zip(names, out, strict=True)}, pipe


def _check_embeddings(sampler_path, cls, folder, negative_prompt):
    """The runtime's embeddings (tokenizers + the text encoder graph) equal diffusers' encode_prompt."""
    from s4s_export.runtime import Sampler

    expected, pipe = _encode(cls, folder, negative_prompt)
    with Sampler.load(sampler_path, providers=["cpu"]) as sampler:
        ids = sampler.text_encoder.ids(PROMPTS)
        got = sampler.text_encoder.sampler_inputs(PROMPTS, negative_prompt)
    tokenizers = [pipe.tokenizer, pipe.tokenizer_2] + ([pipe.tokenizer_3] if getattr(pipe, "tokenizer_3", None) else [])
    for tokenizer, (name, value) in zip(tokenizers, ids.items(), strict=True):
        want = tokenizer(PROMPTS, padding="max_length", max_length=value.shape[1], truncation=True).input_ids
        np.testing.assert_array_equal(value, want, err_msg=name)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].shape[1:] == value.shape[1:], name
        np.testing.assert_allclose(np.broadcast_to(got[name], value.shape), value, rtol=0, atol=EMBEDS_ATOL,
                                   err_msg=name)
    return expected


@pytest.mark.parametrize("negative_prompt", [None, NEGATIVES])
def test_sdxl_text_encoder_matches_encode_prompt(sdxl, negative_prompt):
    """No negative prompt: zeros (SDXL's force_zeros_for_empty_prompt default); given: encoded by both CLIPs."""
    folder, _, result = sdxl
    expected = _check_embeddings(result.onnx_path, diffusers.StableDiffusionXLPipeline, folder, negative_prompt)
    assert (np.abs(expected[NEGATIVE_PROMPT_EMBEDS]).max() == 0) == (negative_prompt is None)
    entry = json.loads(result.sidecar.read_text())["text_encoder"]
    assert entry["kind"] == "sdxl" and entry["force_zeros_for_empty_prompt"] is True
    assert entry["outputs"] == {PROMPT_EMBEDS: [77, 64], POOLED_EMBEDS: [32]}
    assert [t["input"] for t in entry["tokenizers"]] == ["input_ids", "input_ids_2"]
    assert [t["pad_id"] for t in entry["tokenizers"]] == [1, 2]
    assert all((result.onnx_path.parent / f).is_file() for f in [entry["onnx"]] + [t["file"] for t in
                                                                                  entry["tokenizers"]])


@pytest.mark.parametrize("negative_prompt", [None, NEGATIVES])
def test_sd3_text_encoder_matches_encode_prompt(sd3, negative_prompt):
    folder, _, result = sd3
    _check_embeddings(result.onnx_path, diffusers.StableDiffusion3Pipeline, folder, negative_prompt)
    entry = json.loads(result.sidecar.read_text())["text_encoder"]
    assert entry["kind"] == "sd3" and entry["force_zeros_for_empty_prompt"] is False
    assert entry["outputs"] == {PROMPT_EMBEDS: [333, 32], POOLED_EMBEDS: [64]}
    assert [(t["input"], t["length"]) for t in entry["tokenizers"]] == [
        ("input_ids", 77), ("input_ids_2", 77), ("input_ids_3", 256)]


def _images_match(folder, table, result, cls, scale: float, negative_prompt):
    """Images with prompt= equal our PyTorch Sampler + VAE fed diffusers' encode_prompt embeddings."""
    from s4s_export.runtime import Sampler, seeded_noise

    expected, _ = _encode(cls, folder, negative_prompt)
    with Sampler.load(result.onnx_path, providers=["cpu"]) as sampler:
        images = sampler(seed=3, n=2, prompt=PROMPTS, negative_prompt=negative_prompt, guidance_scale=scale)
        noise = seeded_noise(sampler.image_shape, 2, 3)
    feeds = {NOISE: torch.from_numpy(noise), **{k: torch.from_numpy(v) for k, v in expected.items()}}
    if cls is diffusers.StableDiffusionXLPipeline:  # the pipeline's add_time_ids at its default 32 x 32 output
        feeds[TIME_IDS] = torch.tensor([[32, 32, 0, 0, 32, 32]] * 2, dtype=torch.float32)
    assert relative_error(images, _reference(folder, table, feeds, scale)) <= LIMIT


@pytest.mark.parametrize("scale", [1.0, 7.5])
def test_sdxl_images_from_prompt(sdxl, scale):
    _images_match(*sdxl, diffusers.StableDiffusionXLPipeline, scale, None)


def test_sdxl_images_from_prompt_and_negative(sdxl):
    _images_match(*sdxl, diffusers.StableDiffusionXLPipeline, 7.5, NEGATIVES)


@pytest.mark.parametrize("scale", [1.0, 7.5])
def test_sd3_images_from_prompt(sd3, scale):
    _images_match(*sd3, diffusers.StableDiffusion3Pipeline, scale, None)


def test_sd3_without_t5_gives_zeros(tmp_path):
    """No text_encoder_3: T5's part is zeros [256, joint_attention_dim], as diffusers' _get_t5_prompt_embeds."""
    from s4s_export.export.text_encoder import build_text_encoder
    from s4s_export.runtime.text_encoder import TextEncoder

    folder = tmp_path / "sd3"
    sd3_pipeline(tmp_path / "tok", with_t5=False).save_pretrained(folder)
    sampler_path = tmp_path / "sd3.onnx"
    entry = build_text_encoder(folder, sampler_path, 77 + 256, (1, 2))
    assert [t["input"] for t in entry["tokenizers"]] == ["input_ids", "input_ids_2"]
    encoder = TextEncoder.beside(sampler_path, {"text_encoder": entry})
    expected, _ = _encode(diffusers.StableDiffusion3Pipeline, folder, NEGATIVES)
    got = encoder.sampler_inputs(PROMPTS, NEGATIVES)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=EMBEDS_ATOL, err_msg=name)
    assert np.abs(got[PROMPT_EMBEDS][:, 77:]).max() == 0
    for bad in ([], "a cat", [1]):
        with pytest.raises(S4SError, match="non-empty list of strings"):
            encoder(bad)


def test_sd3_text_length_must_leave_room_for_t5(tmp_path):
    """Refused in one line, before the sampler's export (check_text_length) and by the text encoder build."""
    from s4s_export.export.text_encoder import build_text_encoder, check_text_length

    folder = tmp_path / "sd3"
    sd3_pipeline(tmp_path / "tok", with_t5=False).save_pretrained(folder)
    for length in (77, 77 + 513):
        with pytest.raises(S4SError, match="--text-length 333"):
            check_text_length(folder, length)
    check_text_length(folder, 333)
    with pytest.raises(S4SError, match="--text-length 333"):
        build_text_encoder(folder, tmp_path / "sd3.onnx", 77, (1, 2))
    assert not list(tmp_path.glob("sd3.*"))


def test_sample_command_with_prompt(sdxl):
    from typer.testing import CliRunner

    from s4s_export.cli import app
    from s4s_export.runtime import Sampler, make_grid, png_bytes, to_uint8
    from s4s_export.runtime.images import enlarge

    _, _, result = sdxl
    out = result.onnx_path.parent / "prompt.png"
    cli = CliRunner().invoke(app, ["sample", str(result.onnx_path), "--n", "2", "--seed", "4", "--prompt", "a cat",
                                   "--negative-prompt", "blurry", "--guidance-scale", "5", "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    with Sampler.load(result.onnx_path, providers=["cpu"]) as sampler:
        images = sampler(seed=4, n=2, prompt="a cat", negative_prompt="blurry", guidance_scale=5.0)
    assert out.read_bytes() == png_bytes(enlarge(make_grid(to_uint8(images), None)))


@pytest.mark.parametrize("model", ["sdxl", "sd3"])
def test_triton_ensemble(model, request, tmp_path):
    """The ensemble: ids (and the negative prompt's) -> the text encoder, twice -> the sampler -> images."""
    from s4s_export.runtime import write_triton_repository

    _, _, result = request.getfixturevalue(model)
    repo = write_triton_repository(result.onnx_path, tmp_path / "repo", name=model, max_batch=2)
    encoder = (repo / f"{model}_text_encoder" / "config.pbtxt").read_text()
    ensemble = (repo / f"{model}_ensemble" / "config.pbtxt").read_text()
    ids = ["input_ids", "input_ids_2"] + (["input_ids_3"] if model == "sd3" else [])
    for name in ids:
        assert f'name: "{name}"' in encoder and f'name: "negative_{name}"' in ensemble
        assert f'key: "{name}"\n        value: "negative_{name}"' in ensemble
    assert f'name: "{POOLED_EMBEDS}"' in encoder and ensemble.count(f'model_name: "{model}_text_encoder"') == 2
    assert f'key: "{POOLED_EMBEDS}"\n        value: "{NEGATIVE_POOLED_EMBEDS}"' in ensemble
    assert (f'name: "{TIME_IDS}"' in ensemble) == (model == "sdxl") and f'name: "{GUIDANCE}"' in ensemble
    assert (repo / f"{model}_text_encoder" / "1" / "model.onnx").is_file()


def test_entry_forms():
    """The single-encoder entry (graphs built before SDXL/SD3 support) reads as one tokenizer; external weights
    are among the files a build lists."""
    from s4s_export.export.text_encoder import text_encoder_files
    from s4s_export.runtime.text_encoder import encoder_io

    old = {"onnx": "sd.text_encoder.onnx", "tokenizer": "sd.tokenizer.json", "length": 77, "dim": 8}
    assert encoder_io(old) == ({"input_ids": ("sd.tokenizer.json", 77)}, {PROMPT_EMBEDS: [77, 8]})
    new = {"onnx": "m.text_encoder.onnx", "onnx_data": "m.text_encoder.onnx.data",
           "tokenizers": [{"input": "input_ids", "file": "m.tokenizer.json", "length": 77},
                          {"input": "input_ids_3", "file": "m.tokenizer_3.json", "length": 256}],
           "outputs": {PROMPT_EMBEDS: [333, 32], POOLED_EMBEDS: [64]}}
    assert encoder_io(new) == ({"input_ids": ("m.tokenizer.json", 77), "input_ids_3": ("m.tokenizer_3.json", 256)},
                               {PROMPT_EMBEDS: [333, 32], POOLED_EMBEDS: [64]})
    assert text_encoder_files(new) == ["m.text_encoder.onnx", "m.text_encoder.onnx.data", "m.tokenizer.json",
                                       "m.tokenizer_3.json"]
