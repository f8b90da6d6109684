"""Class-conditional graphs: guidance inside the graph, one scale per sample fed at run time, matching PyTorch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from s4s_export.export import inspect_onnx
from s4s_export.export.graph import sampler_graph
from s4s_export.export.guidance import GuidedDenoiser
from s4s_export.export.verify import relative_error, verification_inputs
from s4s_export.modelref import load_model
from s4s_export.sampler import Sampler
from s4s_export.solvers import make_solver


def feeds(noise, labels, scale):
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float32), labels.shape)
    return {"noise": noise.numpy(), "class_labels": labels.numpy(), "guidance_scale": np.ascontiguousarray(scale)}


@pytest.mark.parametrize("model,solver,schedule", [("tiny-cond", "dpmpp2m", "edm"), ("gmm-cond", "unipc", "logsnr")])
def test_guided_graph_matches_pytorch_at_run_time_scales(built, model, solver, schedule):
    result = built(model=model, solver=solver, nfe=2, batch=(1, 4), guidance_scale=1.5)
    assert result.verification.ok
    denoiser = load_model(model)
    k = denoiser.info.num_classes
    table = make_solver(solver, 2, schedule, denoiser.info.sigma_min, denoiser.info.sigma_max)
    sampler = Sampler(GuidedDenoiser(denoiser), table).float()
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["noise", "class_labels", "guidance_scale"]
    noise = torch.randn(4, *denoiser.info.shape, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 1, k - 1, k])
    outs = {}
    for scale in (0.0, 1.0, 3.0):
        ref = sampler(noise, (labels, torch.tensor(scale))).clamp(-1, 1).numpy()
        outs[scale] = session.run(None, feeds(noise, labels, scale))[0]
        assert relative_error(outs[scale], ref) <= 1e-4, scale
    assert np.abs(outs[3.0][:3] - outs[1.0][:3]).max() > 1e-3  # the scale acts on labelled samples
    np.testing.assert_allclose(outs[3.0][3], outs[0.0][3], atol=1e-5)  # the null label is unconditional
    info = inspect_onnx(result.onnx_path)
    assert info["guidance_scale"] == 1.5 and info["num_classes"] == k and info["model"]["num_classes"] == k
    assert info["inputs"][2] == {"name": "guidance_scale", "dtype": "float32", "shape": ["batch"]}
    assert [d.dim_param or d.dim_value for d in _input(result.onnx_path, "guidance_scale").type.tensor_type.shape.dim
            ] == [d.dim_param or d.dim_value for d in _input(result.onnx_path, "noise").type.tensor_type.shape.dim[:1]]
    ort_check = next(c for c in result.verification.checks if c.name.startswith("ORT"))
    assert "batch 1, 3 (2 labelled, 2 null; guidance scales 1.5, 2.5)" in ort_check.detail
    # per-sample scales: each sample as if run alone with its own scale
    scales = np.array([0.0, 1.0, 3.0, 2.0], dtype=np.float32)
    together = session.run(None, feeds(noise, labels, scales))[0]
    for i, scale in enumerate(scales):
        alone = session.run(None, feeds(noise[i:i + 1], labels[i:i + 1], scale))[0]
        assert np.abs(alone[0] - together[i]).max() <= 1e-5, i
    ref = sampler(noise, (labels, torch.from_numpy(scales))).clamp(-1, 1).numpy()
    assert relative_error(together, ref) <= 1e-4


def _input(path, name):
    return next(i for i in onnx.load(str(path), load_external_data=False).graph.input if i.name == name)


@pytest.mark.parametrize("batch,sets", [((1, 1), [(1, [1.5]), (1, [2.5])]), ((2, 2), [(2, [1.5, 2.5])]),
                                        ((1, 8), [(1, [1.5]), (3, [2.5, 1.5, 2.5])])])
def test_verification_compares_labelled_and_null_samples(batch, sets):
    model = load_model("gmm-cond")
    k = model.info.num_classes
    module = sampler_graph(model, make_solver("euler", 1, "logsnr"))
    inputs = verification_inputs(module, model.info.shape, batch, k, 1.5)
    assert [(x[0].shape[0], x[2].tolist()) for x in inputs] == sets
    labels = torch.cat([x[1] for x in inputs])
    assert (labels == k).any() and ((labels >= 0) & (labels < k)).any()
    plain = sampler_graph(load_model("gmm"), make_solver("euler", 1, "logsnr"))
    sizes = {b for b, _ in sets}
    assert [len(x) for x in verification_inputs(plain, model.info.shape, batch, 0, 1.5)] == [1] * len(sizes)


def test_static_batch_one_verifies_guidance(built):
    result = built(model="gmm-cond", solver="euler", nfe=1, batch=(1, 1), guidance_scale=1.5)
    ort_check = next(c for c in result.verification.checks if c.name.startswith("ORT"))
    assert ort_check.ok and "batch 1, 1 (1 labelled, 1 null; guidance scales 1.5, 2.5)" in ort_check.detail
