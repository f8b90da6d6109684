"""The C++ runtime and example app: build with CMake against ONNX Runtime, run its tests, match Python.

Needs cmake, a C++17 compiler, ONNX Runtime headers (.ci/fetch_ort_headers.sh, or S4S_ORT_INCLUDE_DIR)
and the onnxruntime wheel's library; skips naming what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from runtime_helpers import CHW, NUM_CLASSES, export_tiny

from s4s_export.cachedir import cache_root
from s4s_export.noise import label_set, noise_set
from s4s_export.runtime import Sampler, seeded_labels, seeded_noise

ROOT = Path(__file__).resolve().parents[2]
HEADERS = Path(os.environ.get("S4S_ORT_INCLUDE_DIR", cache_root() / "onnxruntime-headers" / "0.4.9" / "include"))


def _requirements() -> tuple[Path, Path]:
    missing = [tool for tool in ("cmake", "make") if shutil.which(tool) is None]
    if not (shutil.which("c++") or shutil.which("g++")):
        missing.append("a C++ compiler")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    if not (HEADERS / "onnxruntime_cxx_api.h").is_file():
        pytest.skip(f"no ONNX Runtime headers in {HEADERS}: run .ci/fetch_ort_headers.sh")
    libraries = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so*"))
    if not libraries:
        pytest.skip("the installed onnxruntime wheel has no libonnxruntime.so")
    return HEADERS, libraries[0]


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    headers, library = _requirements()
    out = tmp_path_factory.mktemp("cpp-build")
    configure = ["cmake", "-S", str(ROOT / "examples" / "cpp"), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DOnnxRuntime_INCLUDE_DIR={headers}", f"-DOnnxRuntime_LIBRARY={library}", "-DS4S_WITH_TENSORRT=OFF"]
    for command in (configure, ["cmake", "--build", str(out), "-j2"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out


@pytest.mark.parametrize("size,n,seed,start", [(12289, 160, 1_000_000, 5), (3, 1000, 2**64 - 1, 2**63), (1, 3, 0, 0)])
def test_cpp_noise_is_bit_identical_to_python(build, tmp_path, size, n, seed, start):
    """s4s::seeded_noise / seeded_labels give the float32 bits of the Python runtime and of eval's noise_set."""
    noise_file, labels_file = tmp_path / "noise.f32", tmp_path / "labels.i64"
    result = subprocess.run([str(build / "s4s_runtime" / "s4s_dump_noise"), str(size), str(n), str(seed), str(start),
                             "10", str(noise_file), str(labels_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    cpp = np.fromfile(noise_file, dtype="<u4").reshape(n, size)
    np.testing.assert_array_equal(cpp, seeded_noise((size,), n, seed, start).view(np.uint32))
    np.testing.assert_array_equal(cpp, noise_set((size,), n, seed, start).numpy().view(np.uint32))
    labels = np.fromfile(labels_file, dtype="<i8")
    np.testing.assert_array_equal(labels, seeded_labels(10, n, seed, start))
    np.testing.assert_array_equal(labels, label_set(10, n, seed, start).numpy())


@pytest.mark.parametrize("seed", ["0", "1000000", str(2**64 - 1)])
def test_example_seed_gives_the_python_runtimes_images(build, graphs, tmp_path, seed):
    raw = tmp_path / "out.raw"
    result = subprocess.run([str(build / "s4s_sample"), str(graphs["uncond"]), "--n", "5", "--seed", seed, "--raw",
                             str(raw), "--out", str(tmp_path / "grid.ppm"), "--threads", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = Sampler.load(graphs["uncond"])(seed=int(seed), n=5)
    assert np.abs(np.fromfile(raw, dtype="<f4").reshape(expected.shape) - expected).max() <= 1e-6
    assert np.abs(expected - Sampler.load(graphs["uncond"])(seed=int(seed) ^ 1, n=5)).max() > 1e-2  # the seed matters


RECORDED_GUIDANCE = 2.5  # a conditional graph's recorded default guidance scale, not 1 (no guidance)


@pytest.fixture(scope="module")
def guided(tmp_path_factory) -> Path:
    """A conditional graph whose metadata and sidecar record guidance_scale 2.5."""
    return export_tiny(tmp_path_factory.mktemp("guided") / "guided.onnx", num_classes=NUM_CLASSES,
                       info={"guidance_scale": RECORDED_GUIDANCE})


def test_library_tests_pass(build, graphs, guided):
    env = {**os.environ, "S4S_TEST_UNCOND": str(graphs["uncond"]), "S4S_TEST_COND": str(graphs["cond"]),
           "S4S_TEST_PER_SAMPLE": str(graphs["cond_per_sample"]),
           "S4S_TEST_GUIDED": str(guided), "S4S_TEST_FIXED2": str(graphs["fixed2"])}
    result = subprocess.run(["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0 and "100% tests passed" in result.stdout, result.stdout + result.stderr


def run_app(build: Path, tmp_path: Path, graph: Path, noise: np.ndarray, *args: str) -> Path:
    noise_file, raw = tmp_path / "noise.f32", tmp_path / "out.raw"
    noise.astype("<f4").tofile(noise_file)
    result = subprocess.run([str(build / "s4s_sample"), str(graph), "--noise", str(noise_file), "--raw", str(raw),
                             "--out", str(tmp_path / "grid.ppm"), "--threads", "1", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"({noise.shape[0]} images {'x'.join(map(str, CHW))}" in result.stdout
    return raw


@pytest.mark.parametrize("graph,args,kwargs", [
    ("uncond", (), {}),
    ("cond", ("--labels", "0,2,3", "--guidance", "1.75"),
     {"class_labels": [0, 2, 3, 0, 2, 3, 0], "guidance_scale": 1.75}),
    ("cond_per_sample", ("--labels", "0,2,3", "--guidance", "1.75,0,3,1,-1,2.5,4"),
     {"class_labels": [0, 2, 3, 0, 2, 3, 0], "guidance_scale": [1.75, 0, 3, 1, -1, 2.5, 4]}),
])
def test_example_matches_python(build, graphs, tmp_path, graph, args, kwargs):
    noise = seeded_noise(CHW, 7, seed=11)
    expected = Sampler.load(graphs[graph])(noise=noise, **kwargs)
    got = np.fromfile(run_app(build, tmp_path, graphs[graph], noise, *args), dtype="<f4").reshape(expected.shape)
    assert np.abs(got - expected).max() <= 1e-6


@pytest.mark.parametrize("source", ["metadata and sidecar", "metadata only", "sidecar overrides metadata"])
def test_example_default_guidance_matches_python(build, tmp_path, source):
    """Without --guidance both runtimes use the graph's recorded guidance_scale (sidecar over metadata)."""
    graph = export_tiny(tmp_path / "g.onnx", num_classes=NUM_CLASSES, info={"guidance_scale": RECORDED_GUIDANCE})
    default, others = RECORDED_GUIDANCE, [1.0]
    if source == "metadata only":
        graph.with_suffix(".json").unlink()
    elif source == "sidecar overrides metadata":
        sidecar = json.loads(graph.with_suffix(".json").read_text())
        graph.with_suffix(".json").write_text(json.dumps({**sidecar, "guidance_scale": 3.25}))
        default, others = 3.25, [1.0, RECORDED_GUIDANCE]
    noise, labels = seeded_noise(CHW, 5, seed=3), [0, 1, 2, 3, 1]
    sampler = Sampler.load(graph)
    assert sampler.info["guidance_scale"] == default
    expected = sampler(noise=noise, class_labels=labels)
    for other in others:  # the default matters: other scales give other images
        assert np.abs(expected - sampler(noise=noise, class_labels=labels, guidance_scale=other)).max() > 1e-2
    got = np.fromfile(run_app(build, tmp_path, graph, noise, "--labels", ",".join(map(str, labels))),
                      dtype="<f4").reshape(expected.shape)
    assert np.abs(got - expected).max() <= 1e-6


def test_python_tensorrt_profile_matches_cpp(graphs):
    """runtime/cpp/tests/test_runtime.cpp expects these TensorRT-provider profile strings from the C++ runtime."""
    from s4s_export.runtime.onnxruntime_runner import PROVIDERS, _spec, provider_options

    inputs = [_spec(a) for a in onnxruntime.InferenceSession(str(graphs["cond"]), providers=["CPUExecutionProvider"])
              .get_inputs()]
    [(_, options)] = provider_options([PROVIDERS["tensorrt"]], graphs["cond"], inputs, (1, 16), 0)
    assert {k: v for k, v in options.items() if k.startswith("trt_profile_")} == {
        "trt_profile_min_shapes": "noise:1x1x6x5,class_labels:1",
        "trt_profile_opt_shapes": "noise:4x1x6x5,class_labels:4",
        "trt_profile_max_shapes": "noise:16x1x6x5,class_labels:16"}


def _two_outputs(path: Path) -> Path:
    """A graph with the noise input but two outputs: not a sampler graph."""
    noise = onnx.helper.make_tensor_value_info("noise", onnx.TensorProto.FLOAT, ["B", *CHW])
    outputs = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["B", *CHW]) for n in ("images", "extra")]
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["noise"], [n]) for n in ("images", "extra")],
                                   "two", [noise], outputs)
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


def test_example_uint8_output_and_ppm(build, graphs, tmp_path):
    noise = seeded_noise(CHW, 5, seed=2)
    expected = Sampler.load(graphs["uint8"])(noise=noise)
    got = np.fromfile(run_app(build, tmp_path, graphs["uint8"], noise), dtype=np.uint8).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)
    ppm = (tmp_path / "grid.ppm").read_bytes()
    header, width, height = b"P6\n", 2 + 3 * (CHW[2] + 2), 2 + 2 * (CHW[1] + 2)
    assert ppm.startswith(header + f"{width} {height}\n255\n".encode())
    pixels = np.frombuffer(ppm[-width * height * 3:], np.uint8).reshape(height, width, 3)
    np.testing.assert_array_equal(pixels[2:2 + CHW[1], 2:2 + CHW[2], 0], expected[0, :, :, 0])


@pytest.mark.parametrize("graph,args,message", [
    ("cond", (), "this model is class-conditional: pass class labels (2 integers in [0, 3] (3 = unconditional))"),
    ("cond", ("--labels", "0,4"), "class label 4 out of range; valid labels are [0, 3]"),
    ("cond", ("--labels", "-1"), "class label -1 out of range"),
    ("cond", ("--labels", "1", "--guidance", "big"), "--guidance needs a number, got 'big'"),
    ("uncond", ("--guidance", "2"), "this model is unconditional: it takes no guidance_scale"),
    ("cond", ("--labels", "1", "--guidance", "1,2"), "this graph takes one guidance_scale for the whole batch"),
    ("cond_per_sample", ("--labels", "1", "--guidance", "1,2,3"), "guidance_scale must be one number or one per "
                                                                  "image (2); got 3"),
    ("fixed2", ("--n", "3"), "batch 3 cannot be split into runs within the batch range [2, 2]"),
    ("fixed2", ("--n", "1"), "batch 1 is below the minimum batch 2"),
    ("uncond", ("--n", "0"), "--n must be at least 1"),
    ("uncond", ("--seed", "-1"), "--seed must be a non-negative integer, got '-1'"),
    ("bad sidecar", (), "is not valid JSON"),
    ("two outputs", (), "it has 2 outputs; expected one, images"),
])
def test_example_reports_errors(build, graphs, tmp_path, graph, args, message):
    if graph == "bad sidecar":
        path = export_tiny(tmp_path / "bad.onnx")
        path.with_suffix(".json").write_text('{"nfe": 1,')
    else:
        path = _two_outputs(tmp_path / "two.onnx") if graph == "two outputs" else graphs[graph]
    result = subprocess.run([str(build / "s4s_sample"), str(path), "--n", "2", "--out", str(tmp_path / "g.ppm"), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.fixture(scope="module")
def text_graph(tmp_path_factory) -> Path:
    """A tiny text-conditioned SD graph (UNet2DConditionModel + AutoencoderKL), 2 steps, batch 1..3, with its
    text encoder graph (a tiny CLIP, prompts of 5 tokens) and tokenizer.json beside it."""
    tiny = pytest.importorskip("families.tiny", reason="the diffusers extra is not installed")
    from types import SimpleNamespace

    from s4s_export.export.build import BuildRequest, Resolved, build_onnx
    from s4s_export.families.diffusers_folder import load_diffusers
    from s4s_export.families.scheduler_grid import solver_for_scheduler

    folder = tmp_path_factory.mktemp("sd")
    encoder, tokenizer = tiny.tiny_clip(tmp_path_factory.mktemp("clip"))
    scheduler = tiny.diffusers.DPMSolverMultistepScheduler(**tiny.SD_SCHEDULER)
    components = {**tiny.tiny_sd_pipeline(scheduler).components, "text_encoder": encoder, "tokenizer": tokenizer}
    pipeline = tiny.diffusers.StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    model = load_diffusers(SimpleNamespace(target=str(folder), checkpoint=None, random_weights=False, config=None))
    pipeline.scheduler.set_timesteps(2)
    table = solver_for_scheduler(pipeline.scheduler, "dpmpp2m")
    request = BuildRequest(out=str(folder / "graphs"), batch=(1, 3), text_length=5, text_encoder=str(folder))
    return build_onnx(request, resolved=Resolved(model, table, {"kind": "test"})).onnx_path


def test_example_text_graph_matches_python(build, text_graph, tmp_path):
    """Embeddings in, images out: the C++ example equals the Python runtime (max abs <= 1e-5), guided."""
    rng = np.random.default_rng(0)
    embeds, negative = rng.standard_normal((5, 8), np.float32), rng.standard_normal((5, 8), np.float32)
    embeds.astype("<f4").tofile(tmp_path / "e.f32")
    negative.astype("<f4").tofile(tmp_path / "n.f32")
    noise = seeded_noise((4, 16, 16), 3, seed=1)
    noise_file, raw = tmp_path / "noise.f32", tmp_path / "out.raw"
    noise.astype("<f4").tofile(noise_file)
    result = subprocess.run([str(build / "s4s_sample"), str(text_graph), "--noise", str(noise_file), "--raw", str(raw),
                             "--out", str(tmp_path / "grid.ppm"), "--threads", "1", "--guidance", "7.5",
                             "--embeds", str(tmp_path / "e.f32"), "--negative-embeds", str(tmp_path / "n.f32")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with Sampler.load(text_graph, providers=["cpu"]) as sampler:
        expected = sampler(noise=noise, prompt_embeds=embeds, negative_prompt_embeds=negative, guidance_scale=7.5)
    got = np.fromfile(raw, dtype="<f4").reshape(expected.shape)
    assert expected.shape == (3, 3, 32, 32) and np.abs(got - expected).max() <= 1e-5
    missing = subprocess.run([str(build / "s4s_sample"), str(text_graph), "--n", "1", "--guidance", "7.5",
                              "--embeds", str(tmp_path / "e.f32")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "negative_prompt_embeds is missing" in missing.stderr


def test_example_token_ids_match_python_prompts(build, text_graph, tmp_path):
    """Token ids in, images out: the Python runtime tokenizes the prompts (tokenizer.json) and runs prompt ->
    ids -> text encoder -> sampler; the C++ example given those ids (run_ids) gives the same images
    (max abs <= 1e-5), guided with per-image scales, the negative prompt the empty one as in Python."""
    prompts, scales = ["a cat", "cat at", "a bat"], [7.5, 1.0, 3.0]
    noise = seeded_noise((4, 16, 16), 3, seed=2)
    with Sampler.load(text_graph, providers=["cpu"]) as sampler:
        expected = sampler(noise=noise, prompt=prompts, guidance_scale=scales)
        ids, negative = sampler.text_encoder.ids(prompts)["input_ids"], sampler.text_encoder.ids([""])["input_ids"]
        assert np.abs(expected - sampler(noise=noise, prompt=prompts, guidance_scale=7.5)).max() > 1e-3
    assert ids.shape == (3, 5) and len(np.unique(ids, axis=0)) == 3
    ids.astype("<i8").tofile(tmp_path / "ids.i64")
    negative.astype("<i8").tofile(tmp_path / "negative.i64")
    noise.astype("<f4").tofile(tmp_path / "noise.f32")
    raw = tmp_path / "out.raw"
    command = [str(build / "s4s_sample"), str(text_graph), "--noise", str(tmp_path / "noise.f32"), "--raw", str(raw),
               "--out", str(tmp_path / "grid.ppm"), "--threads", "1"]
    result = subprocess.run([*command, "--ids", str(tmp_path / "ids.i64"), "--negative-ids",
                             str(tmp_path / "negative.i64"), "--guidance", ",".join(map(str, scales))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    got = np.fromfile(raw, dtype="<f4").reshape(expected.shape)
    assert np.abs(got - expected).max() <= 1e-5
    ids_file, seeded = str(tmp_path / "ids.i64"), [str(build / "s4s_sample"), str(text_graph), "--seed", "0"]
    for args, message in [
        (["--n", "3", "--ids", ids_file, "--guidance", "7.5"], "negative_prompt_embeds is missing"),
        (["--n", "2", "--ids", ids_file], "ids must hold 5 token ids (one prompt for all images) or 10 (one prompt "
                                          "per image); got 15"),
        (["--n", "3", "--ids", ids_file, "--guidance", "1,2"], "guidance_scale must be one number or one per image "
                                                               "(3); got 2"),
        (["--n", "1", "--ids", ids_file, "--embeds", ids_file], "pass either --ids or --embeds, not both"),
    ]:
        bad = subprocess.run([*seeded, *args, "--out", str(tmp_path / "bad.ppm")], capture_output=True, text=True,
                             timeout=60)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_example_refuses_ids_for_several_tokenizers(build, text_graph, tmp_path):
    """An SDXL / SD3 text encoder (one ids input per tokenizer) still loads for embeddings, and run_ids refuses
    in one line, naming the way out (run_text with embeddings)."""
    import json
    import shutil

    folder = tmp_path / "graphs"
    shutil.copytree(text_graph.parent, folder)
    sidecar = folder / text_graph.with_suffix(".json").name
    info = json.loads(sidecar.read_text())
    entry = info["text_encoder"]
    entry["tokenizers"] = [{"input": "input_ids", "file": entry["tokenizer"], "length": entry["length"]},
                           {"input": "input_ids_2", "file": entry["tokenizer"], "length": entry["length"]}]
    sidecar.write_text(json.dumps(info))
    ids = tmp_path / "ids.i64"
    np.zeros(5, "<i8").tofile(ids)
    result = subprocess.run([str(build / "s4s_sample"), str(folder / text_graph.name), "--seed", "0", "--n", "1",
                             "--ids", str(ids), "--out", str(tmp_path / "bad.ppm")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "takes 2 token-id inputs (SDXL / SD3)" in result.stderr and "run_text" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
