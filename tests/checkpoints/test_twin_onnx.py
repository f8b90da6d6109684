"""The ffhq architecture twin (61.8M parameters) at NFE 5 exports to ONNX and matches PyTorch in ORT CPU.

Uses the project exporter (s4s_export.export: sampler_graph -> export_model -> compact -> save_onnx).
About 100 s of CPU time (3.7 min wall on a loaded 2-core box), hence `slow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from s4s_export.export.graph import sampler_graph  # noqa: E402
from s4s_export.export.onnx_export import compact, export_model  # noqa: E402
from s4s_export.export.onnx_files import save_onnx  # noqa: E402
from s4s_export.export.verify import check_inputs, cpu_runner, ort_outputs, relative_error, torch_outputs  # noqa: E402
from s4s_export.modelref import ModelRef, load_model  # noqa: E402
from s4s_export.solvers import make_solver  # noqa: E402


@pytest.mark.slow
def test_ffhq_twin_nfe5_onnx_matches_pytorch(tmp_path: Path) -> None:
    twin = load_model(ModelRef("ffhq", random_weights=True))
    info = twin.info
    assert info.name == "ffhq-twin" and twin.identity_dict()["name"] == "ffhq-twin" and info.shape == (3, 64, 64)
    module = sampler_graph(twin, make_solver("dpmpp3m", 5, "logsnr", info.sigma_min, info.sigma_max))
    inputs = check_inputs(module, info.shape, 1, info.num_classes, 1.0)
    proto = export_model(module, inputs, (1, 1))
    compact(proto)
    files = save_onnx(proto, tmp_path / "ffhq-twin.onnx")
    del proto
    got, ref = ort_outputs(cpu_runner(files[0]), inputs), torch_outputs(module, inputs)
    assert (np.abs(ref) < 1).mean() > 0.25  # the graph clamps to [-1, 1]: most values must not be clamped
    assert relative_error(got, ref) <= 1e-4
