"""fp32 export of a tiny random SongUNet at NFE 3: ORT matches the core Sampler, dynamic batch, metadata."""

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from s4s_export.export import inspect_onnx
from s4s_export.export.onnx_files import save_onnx
from s4s_export.export.verify import Verification, graph_stats, relative_error
from s4s_export.modelref import load_model
from s4s_export.sampler import Sampler
from s4s_export.solvers import make_solver

BATCH = (1, 5)


@pytest.fixture(scope="module")
def result(built):
    return built(model="tiny", solver="dpmpp3m", nfe=3, batch=BATCH)


def run(path, noise: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"noise": noise})[0]


def test_ort_matches_the_core_sampler(result):
    assert result.verification.ok
    model = load_model("tiny")
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    solver = make_solver("dpmpp3m", 3, "edm", model.info.sigma_min, model.info.sigma_max)
    ref = Sampler(model, solver).float()(noise).clamp(-1, 1).numpy()
    out = run(result.onnx_path, noise.numpy())
    assert out.dtype == np.float32 and out.shape == (4, 1, 8, 8)
    assert relative_error(out, ref) <= 1e-4
    assert np.abs(ref).max() > 0.1 and np.abs(ref - noise.numpy().clip(-1, 1)).max() > 0.1  # not a trivial map


def test_dynamic_batch_gives_per_sample_identical_results(result):
    noise = np.random.default_rng(0).standard_normal((BATCH[1], 1, 8, 8)).astype(np.float32)
    full = run(result.onnx_path, noise)
    for b in range(BATCH[0], BATCH[1]):
        np.testing.assert_allclose(run(result.onnx_path, noise[:b]), full[:b], rtol=0, atol=1e-6)
    graph_input = onnx.load(str(result.onnx_path)).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # symbolic batch, the rest static
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:]] == [1, 8, 8]


def test_weights_once_and_solver_constants_as_initializers(result):
    model = onnx.load(str(result.onnx_path))
    net = load_model("tiny")
    net_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    arrays = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    assert sum(a.nbytes for a in arrays) <= net_bytes + 2048  # three unrolled denoiser calls share one copy
    contents = [(a.dtype.str, a.tobytes()) for a in arrays]
    assert len(set(contents)) == len(contents)  # no initializer duplicated, whatever its shape
    values = Counter(np.sort(a.ravel()).tobytes() for a in arrays if a.dtype == np.float32)
    for name, p in net.named_parameters():  # each weight once (some stored transposed or flattened)
        assert values[np.sort(p.numpy().ravel()).tobytes()] == 1, name
    assert not any(n.op_type == "Constant" for n in model.graph.node)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Loop", "If", "Scan", "RandomNormal", "RandomNormalLike"}
    assert sum(n.op_type == "Softmax" for n in model.graph.node) == 3  # one attention block per evaluation


def test_metadata_sidecar_and_inspect(result):
    info = inspect_onnx(result.onnx_path)
    solver = make_solver("dpmpp3m", 3, "edm", 0.002, 80.0)
    assert info["format"] == "s4s-export.graph" and info["nfe"] == 3 and info["precision"] == "fp32"
    assert info["solver"]["name"] == "dpmpp3m" and info["solver"]["source"]["kind"] == "classical"
    np.testing.assert_allclose(info["solver"]["sigmas"], solver.sigmas)
    assert info["model"]["name"] == "tiny" and info["model"]["weights_sha256"] == load_model("tiny").identity()
    assert info["batch_range"] == list(BATCH) and info["graph"]["opset"] == 20
    assert [(i["name"], i["dtype"]) for i in info["inputs"]] == [("noise", "float32")]
    assert [(o["name"], o["dtype"]) for o in info["outputs"]] == [("images", "float32")]
    assert {"s4s_export", "torch", "numpy", "python", "onnx", "onnxscript", "onnx_ir", "onnxruntime"} <= set(
        info["provenance"]["versions"])
    assert info["provenance"]["versions"]["onnxruntime"] == ort.__version__
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["onnx"] == result.onnx_path.name and sidecar["verification"]["ok"]
    for key, value in sidecar.items():  # the .onnx alone carries the sidecar's description
        if key not in ("onnx", "verification", "inputs", "outputs"):
            assert info[key] == value, key


def test_size_ratio_is_recorded_and_flagged(result):
    stats = json.loads(result.sidecar.read_text())["verification"]["stats"]
    files = result.onnx_path.stat().st_size
    assert stats["file_bytes"] == files and stats["size_ratio"] == pytest.approx(files / stats["weights_bytes"])
    assert stats["weights_bytes"] == sum(t.numel() * t.element_size() for t in load_model("tiny").state_dict().values())
    assert stats["size_within_1.1x"] == (stats["size_ratio"] <= 1.1)
    warnings = [line for line in result.verification.lines() if line.startswith("warning:")]
    assert result.verification.ok  # reported, never a failure
    # a 1x8x8 network with 8 channels: the three unrolled evaluations' structure outweighs its weights
    assert not stats["size_within_1.1x"] and len(warnings) == 1 and "over the 1.1x target" in warnings[0]
    within = Verification([], graph_stats(result.onnx_path, files))  # the same file against weights as large
    assert within.stats["size_within_1.1x"] and not any(line.startswith("warning:") for line in within.lines())


def test_external_data_is_loaded_everywhere(result, tmp_path):
    path = tmp_path / "ext.onnx"
    files = save_onnx(onnx.load(str(result.onnx_path)), path, external_data=True)
    assert files == [path, tmp_path / "ext.onnx.data"] and path.stat().st_size < files[1].stat().st_size
    onnx.checker.check_model(str(path), full_check=True)
    noise = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(run(path, noise), run(result.onnx_path, noise))
    info = inspect_onnx(path)
    assert info["graph"]["external_data"] and info["nfe"] == 3
