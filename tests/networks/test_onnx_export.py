"""Small configurations of each architecture export with the dynamo exporter and match onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s4s_export.networks import build_network

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch-internal pytree deprecation

SONG = dict(img_resolution=8, img_channels=3, model_type="SongUNet", model_channels=16, channel_mult=[1, 2],
            num_blocks=1, attn_resolutions=[4], dropout=0.0)
CASES = {
    "ddpmpp-cond": ("EDMPrecond", dict(SONG, label_dim=10, augment_dim=9)),
    "ncsnpp-ve": ("VEPrecond", dict(SONG, embedding_type="fourier", encoder_type="residual", channel_mult_noise=2,
                                     resample_filter=[1, 3, 3, 1])),
    "adm-cond-iddpm": ("iDDPMPrecond", dict(SONG, model_type="DhariwalUNet", model_channels=32, label_dim=10)),
}


class Wrapped(torch.nn.Module):
    """Tensor-only signature for export: (x, sigma, labels)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(x, sigma, labels)


@pytest.mark.parametrize("case", list(CASES))
def test_dynamo_export_matches_ort(case: str, tmp_path) -> None:
    class_name, kwargs = CASES[case]
    torch.manual_seed(0)
    net = build_network(class_name, **kwargs).eval().requires_grad_(False)
    with torch.no_grad():  # EDM zero-inits the output convs; make the network visible in D
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randn(2, 3, 8, 8)
    sigma = torch.tensor([0.02, 7.0])
    labels = torch.tensor([3, 10])  # 10 = null label (ignored by unconditional nets)
    model = Wrapped(net).eval()
    path = tmp_path / f"{case}.onnx"
    # optimize=False keeps the test fast; the graph optimizer is the exporter's concern, not the network's
    torch.onnx.export(model, (x, sigma, labels), str(path), dynamo=True, optimize=False,
                      input_names=["x", "sigma", "labels"], output_names=["denoised"], verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), (x, sigma, labels))}
    got = sess.run(None, feeds)[0]
    with torch.no_grad():
        ref = model(x, sigma, labels).numpy()
    assert np.abs(got - ref).max() <= 1e-4
