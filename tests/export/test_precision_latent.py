"""Per-component --precision (export/precision_spec.py, export/precision.py) on latent graphs: the grammar and its
one-line errors; tiny SD (fp16 UNet, fp32 VAE, fp16 CLIP text encoder), tiny SD3 (fp16 transformer and VAE) and a
tiny CompVis KL LDM (fp16 UNet) built, verified, inspected in the ONNX and compared with the fp32 PyTorch path."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from test_export_latent import Ref, _reference, _run, _text_inputs

from s4s_export.contract import COMPONENT_PRECISION_KEY, GUIDANCE, INPUT_IDS, PRECISION_KEY, PROMPT_EMBEDS
from s4s_export.errors import S4SError
from s4s_export.export.build import BuildRequest, Resolved, build_onnx
from s4s_export.export.precision_spec import PrecisionSpec, parse_precision
from s4s_export.export.verify import cpu_runner, cpu_session, relative_error
from s4s_export.families.diffusers_folder import load_diffusers
from s4s_export.families.scheduler_grid import solver_for_scheduler
from s4s_export.sampler import Sampler
from s4s_export.solver_ref import resolve_solver

tiny = pytest.importorskip("families.tiny", reason="the diffusers extra is not installed")
diffusers = tiny.diffusers

NFE = 2
IMAGE_ATOL = 0.05  # fp16 graph (ORT CPU) vs the fp32 PyTorch path, images in [-1, 1]; measured about 1e-2
NORMS = (torch.nn.GroupNorm, torch.nn.LayerNorm)


@pytest.mark.parametrize("text,expected", [
    ("fp16", PrecisionSpec(denoiser="fp16")),
    (" bf16 ", PrecisionSpec(denoiser="bf16")),
    ("unet=fp16,vae=fp32,text-encoder=fp16", PrecisionSpec("fp16", "fp32", "fp16",
                                                           frozenset({"denoiser", "decoder", "text-encoder"}))),
    ("transformer=fp16, VAE=fp16", PrecisionSpec("fp16", "fp16", "fp32", frozenset({"denoiser", "decoder"}))),
    ("decoder=bf16", PrecisionSpec("fp32", "bf16", "fp32", frozenset({"decoder"}))),
])
def test_grammar(text, expected):
    assert parse_precision(text) == expected


def test_labels_and_lowest():
    assert parse_precision("fp16").label() == "fp16"
    assert parse_precision("unet=fp16,vae=fp32").label() == "fp16"
    assert parse_precision("unet=fp16,vae=bf16,text-encoder=fp16").label() == "fp16-decoder-bf16-text-encoder-fp16"
    spec = parse_precision("vae=fp16,text-encoder=bf16")
    assert spec.lowest(["denoiser", "decoder"]) == "fp16" and spec.lowest(["denoiser"]) == "fp32"
    assert spec.components(["denoiser", "decoder"]) == {"denoiser": "fp32", "decoder": "fp16"}


@pytest.mark.parametrize("text,message", [
    ("fp8", "unknown precision 'fp8'; choose one of: fp32, fp16, bf16"),
    ("vea=fp16", "unknown --precision component 'vea'; choose from: denoiser, decoder, text-encoder"),
    ("unet=fp8", "unknown precision 'fp8' for denoiser; choose one of: fp32, fp16, bf16"),
    ("unet=fp16,vae", "COMPONENT=VALUE pairs separated by commas"),
    ("unet=fp16,denoiser=fp32", "names denoiser twice"),
])
def test_bad_specs_are_one_line(text, message):
    with pytest.raises(S4SError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_precision(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec,message", [
    ("unet=fp17", "unknown precision 'fp17' for denoiser"),
    ("vae=fp16", "--precision names decoder, but model 'gmm' has no latent decoder: drop decoder=fp16"),
    ("text-encoder=fp16", "a text encoder graph is built only with --text-encoder"),
])
def test_cli_bad_specs_exit_2_in_one_line(monkeypatch, capsys, tmp_path, spec, message):
    from s4s_export import cli

    monkeypatch.setattr(sys, "argv", ["s4s-export", "build", "--model", "gmm", "--solver", "euler", "--precision",
                                      spec, "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def _grid(pipeline, name: str):
    pipeline.scheduler.set_timesteps(NFE)
    return solver_for_scheduler(pipeline.scheduler, name)


def _build(tmp_path_factory, name: str, pipeline, solver: str, precision: str, text_encoder: bool = False):
    folder = tmp_path_factory.mktemp(name)
    pipeline.save_pretrained(folder)
    model = load_diffusers(Ref(str(folder)))
    table = _grid(pipeline, solver)
    req = BuildRequest(out=str(folder / "graphs"), batch=(1, 3), precision=precision,
                       text_encoder=str(folder) if text_encoder else None)
    return folder, model, table, build_onnx(req, resolved=Resolved(model, table, {"kind": "test"}))


@pytest.fixture(scope="module")
def sd16(tmp_path_factory):
    """Tiny SD + tiny CLIP: fp16 UNet, fp32 VAE, fp16 text encoder."""
    scheduler = diffusers.DPMSolverMultistepScheduler(**tiny.SD_SCHEDULER)
    encoder, tokenizer = tiny.tiny_clip(tmp_path_factory.mktemp("clip"))
    components = {**tiny.tiny_sd_pipeline(scheduler).components, "text_encoder": encoder, "tokenizer": tokenizer}
    pipeline = diffusers.StableDiffusionPipeline(**components, requires_safety_checker=False)
    return _build(tmp_path_factory, "sd16", pipeline, "dpmpp2m", "unet=fp16,vae=fp32,text-encoder=fp16",
                  text_encoder=True)


def _initializer_types(path) -> dict[str, str]:
    g = onnx.load(str(path)).graph
    return {i.name: onnx.TensorProto.DataType.Name(i.data_type) for i in g.initializer}


def _weight_types(path, op: str) -> Counter:
    """How many `op` nodes take a weight initializer of each type (input 1)."""
    g = onnx.load(str(path)).graph
    types = _initializer_types(path)
    return Counter(types[n.input[1]] for n in g.node if n.op_type == op and n.input[1] in types)


def _convs(module) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def _params(module, norms: bool) -> int:
    return sum(p.numel() for m in module.modules() for p in m.parameters(recurse=False)
               if isinstance(m, NORMS) == norms)


def test_sd_fp16_unet_fp32_vae_builds_verified_and_described(sd16):
    _, _, _, result = sd16
    checks = {c.name.split(" ")[0]: c for c in result.verification.checks}
    assert result.verification.ok and checks["ORT"].detail.endswith("(limit 2e-02)")
    assert checks["fp16"].ok and "RMSE limit 5.0e-02" in checks["fp16"].detail
    assert result.onnx_path.name.endswith("-nfe2-fp16-text-encoder-fp16.onnx")
    doc = json.loads(result.sidecar.read_text())
    assert doc[PRECISION_KEY] == "fp16-text-encoder-fp16"
    assert doc[COMPONENT_PRECISION_KEY] == {"denoiser": "fp16", "decoder": "fp32", "text-encoder": "fp16"}
    assert doc["text_encoder"]["precision"] == "fp16" and "fp16 vs fp32" in doc["text_encoder"]["verification"]
    assert {i["dtype"] for i in doc["inputs"]} == {"float32"} and doc["outputs"][0]["dtype"] == "float32"
    model = onnx.load(str(result.onnx_path), load_external_data=False)
    assert json.loads({p.key: p.value for p in model.metadata_props}[COMPONENT_PRECISION_KEY])["decoder"] == "fp32"
    elem = {i.name: i.type.tensor_type.elem_type for i in [*model.graph.input, *model.graph.output]}
    assert set(elem.values()) == {onnx.TensorProto.FLOAT}  # runtimes see float32 IO at every precision


def test_sd_graph_weights_fp16_unet_fp32_decoder_and_norms(sd16):
    folder, model, _, result = sd16
    unet, vae = model.net.net, model.decoder.vae
    convs = _weight_types(result.onnx_path, "Conv")
    # every UNet convolution in fp16 in each of the NFE steps; the decoder's (and post_quant_conv) once, in fp32
    assert convs == {"FLOAT16": NFE * _convs(unet), "FLOAT": _convs(vae.decoder) + 1}
    for op in ("InstanceNormalization", "LayerNormalization"):  # normalisation layers compute in float32
        assert set(_weight_types(result.onnx_path, op)) <= {"FLOAT"}
    g = onnx.load(str(result.onnx_path)).graph
    half = sum(int(np.prod(i.dims)) for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    unet_half = _params(unet, norms=False)  # all UNet weights but the norms' are stored in fp16 (+ a few constants)
    assert unet_half <= half <= unet_half + 16


def test_sd_fp16_images_close_to_fp32(sd16):
    folder, _, table, result = sd16
    for batch, scale in ((1, 1.0), (3, 7.5)):
        feeds = _text_inputs(batch, 77, 8)
        ours = _run(result, feeds, scale)
        full = _reference(folder, table, feeds, scale)  # fp32 PyTorch sampler and VAE, no graph code
        assert np.isfinite(ours).all() and np.abs(ours - full).max() <= IMAGE_ATOL
        assert np.abs(ours - full).max() > 0  # it is not the fp32 graph


def test_fp16_text_encoder_graph(sd16):
    folder, _, _, result = sd16
    doc = json.loads(result.sidecar.read_text())
    path = result.onnx_path.parent / doc["text_encoder"]["onnx"]
    assert _weight_types(path, "MatMul")["FLOAT16"] > 0 and set(_weight_types(path, "LayerNormalization")) == {
        "FLOAT"}
    import transformers

    clip = transformers.CLIPTextModel.from_pretrained(folder / "text_encoder").eval()
    ids = torch.tensor([[0, 5, 9, 1] + [1] * 73], dtype=torch.int64)
    with torch.no_grad():
        expected = clip(ids).last_hidden_state.numpy()
    got = cpu_session(path).run([PROMPT_EMBEDS], {INPUT_IDS: ids.numpy()})[0]
    assert got.dtype == np.float32 and relative_error(got, expected) <= 2e-2


def test_python_runtime_runs_the_fp16_graph_unchanged(sd16):
    from s4s_export.runtime import Sampler

    _, _, _, result = sd16
    feeds = _text_inputs(2, 77, 8)
    with Sampler.load(result.onnx_path, providers=["cpu"]) as sampler:
        images = sampler(seed=3, n=2, prompt_embeds=feeds[PROMPT_EMBEDS][0].numpy(),
                         negative_prompt_embeds=feeds["negative_prompt_embeds"][0].numpy(), guidance_scale=7.5)
    assert images.dtype == np.float32 and images.shape == (2, 3, 32, 32) and np.isfinite(images).all()


def test_sd3_fp16_transformer_and_fp16_vae(tmp_path_factory):
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    folder, model, table, result = _build(tmp_path_factory, "sd316", tiny.tiny_sd3_pipeline(scheduler), "euler",
                                          "transformer=fp16,vae=fp16")
    assert result.verification.ok and result.onnx_path.name.endswith("-fp16-decoder-fp16.onnx")
    assert json.loads(result.sidecar.read_text())[COMPONENT_PRECISION_KEY] == {"denoiser": "fp16", "decoder": "fp16"}
    convs = _weight_types(result.onnx_path, "Conv")  # the patch embedding per step, and the whole decoder: fp16
    assert convs == {"FLOAT16": NFE * _convs(model.net.net) + _convs(model.decoder.vae.decoder) + 1}
    feeds = _text_inputs(3, 77, 32, pooled=64)
    ours = _run(result, feeds, 7.5)
    assert np.abs(ours - _reference(folder, table, feeds, 7.5)).max() <= IMAGE_ATOL


@pytest.mark.slow
def test_compvis_fp16_unet(tmp_path_factory):
    """A CompVis KL LDM (a VQ first stage quantises, so its codes can flip under any latent change)."""
    from families.compvis_fixture import tiny_compvis_ref

    from s4s_export.families.compvis import load_compvis

    folder = tmp_path_factory.mktemp("compvis16")
    model = load_compvis(tiny_compvis_ref("kl", folder))
    table = resolve_solver("dpmpp2m", denoiser=model, nfe=NFE, schedule="logsnr").table
    result = build_onnx(BuildRequest(out=str(folder / "graphs"), batch=(1, 3), precision="fp16"),
                        resolved=Resolved(model, table, {"kind": "test"}))
    assert result.verification.ok
    convs = _weight_types(result.onnx_path, "Conv")
    assert convs == {"FLOAT16": NFE * _convs(model.net.unet), "FLOAT": _convs(model.decoder.vae.decoder) + 1}
    noise = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    with cpu_runner(result.onnx_path) as runner:
        ours = runner.infer({"noise": noise.numpy()})
    with torch.no_grad():
        full = model.decoder(Sampler(model, table)(noise)).clamp(-1, 1).numpy()  # fp32 PyTorch, no graph code
    assert np.abs(ours - full).max() <= IMAGE_ATOL


@pytest.mark.parametrize("precision,decode,text_encoder,message", [
    ("vae=fp16", False, False, "--precision names decoder, but --no-decode leaves the decoder out of the graph"),
    ("text-encoder=fp16", True, False, "a text encoder graph is built only with --text-encoder"),
])
def test_absent_components_are_refused_before_the_export(sd16, tmp_path, precision, decode, text_encoder, message):
    _, model, table, _ = sd16
    with pytest.raises(S4SError, match=message):
        build_onnx(BuildRequest(out=str(tmp_path), precision=precision, decode=decode),
                   resolved=Resolved(model, table, {}))
    assert list(tmp_path.iterdir()) == []


def test_guidance_is_float32_around_the_half_network(sd16):
    """The guided combination and the solver see float32: the half network's output is cast back."""
    from s4s_export.export.latent_graph import latent_sampler_graph

    _, model, table, _ = sd16
    module = latent_sampler_graph(model, table, "latent", precision="fp16")
    seen = []
    wrapper = module.sampler.denoiser.net  # HalfTimestepNetwork around a half copy of the DiffusersNet
    for m in (wrapper, wrapper.net):
        m.register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, args[1].dtype, out.dtype)))
    feeds = module.example_inputs(2, 7.5)
    with torch.no_grad():
        z = module(**feeds)
    assert z.dtype == torch.float32 and feeds[GUIDANCE].dtype == torch.float32
    # inside: latent fp16, timestep float32, output fp16; the wrapper's boundary: float32 in and out
    assert set(seen) == {(torch.float16, torch.float32, torch.float16), (torch.float32, torch.float32, torch.float32)}
    assert next(wrapper.net.parameters()).dtype == torch.float16 and next(model.net.parameters()).dtype == torch.float32


def test_upcast_attention_layers_compute_scores_in_float32():
    """SD 2.1's `upcast_attention`: the half copy uses diffusers' AttnProcessor (float32 scores), others keep SDPA."""
    from diffusers.models.attention_processor import AttnProcessor

    from s4s_export.export.precision import half_copy, upcast_attention
    from s4s_export.families.guidance import TextCond
    from s4s_export.families.networks import wrap_network

    net = wrap_network(tiny.tiny_unet(upcast_attention=True))
    half = upcast_attention(half_copy(net, torch.float16))
    flagged = [m for m in half.modules() if hasattr(m, "set_processor") and m.upcast_attention]
    assert flagged and all(isinstance(m.processor, AttnProcessor) for m in flagged)
    assert not any(isinstance(getattr(m, "processor", None), AttnProcessor) for m in net.modules())
    g = torch.Generator().manual_seed(0)
    x, embeds = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 77, 8, generator=g)
    t = torch.tensor([999.0, 10.5])
    with torch.no_grad():
        ours = half(x.half(), t, TextCond(embeds.half())).float()
        full = net(x, t, TextCond(embeds))
    assert relative_error(ours.numpy(), full.numpy()) <= 2e-2
