"""fd-digits: the Fréchet distance in the shipped digits classifier's features (s4s_export/fd_digits.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="fd-digits reads sklearn's bundled digits")
pytest.importorskip("scipy", reason="fd-digits uses scipy.linalg.sqrtm")

from s4s_export.fd_digits import (
    FdDigits,
    classifier_features,
    digits_16x16,
    feature_stats,
    frechet_distance,
    held_out_split,
    load_classifier,
)


@pytest.fixture(scope="module")
def shipped():
    return load_classifier()


@pytest.fixture(scope="module")
def metric(shipped):
    return FdDigits(*shipped)


def test_shipped_classifier_accuracy_on_held_out_split(shipped):
    net, record = shipped
    x, y = digits_16x16()
    _, test = held_out_split(len(x))
    acc = float((net(x[test]).argmax(1) == y[test]).float().mean())
    assert acc >= 0.95
    assert acc == pytest.approx(record["held_out_accuracy"], abs=1e-6)
    assert record["held_out_samples"] == len(test) == 359


def test_split_is_disjoint_and_complete():
    train, test = held_out_split(1797)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 1797


def test_frechet_distance_against_closed_form():
    # Commuting (diagonal) covariances: tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    want = 5.0 + float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-9)


def test_data_itself_scores_near_zero_and_corruptions_score_higher(metric):
    x, _ = digits_16x16()
    assert abs(metric(x)) < 1e-6  # the same set: identical statistics
    half = metric(x[::2])
    shifted = metric(torch.roll(x[::2], shifts=3, dims=3))
    noisy = metric((x[::2] + 0.5 * torch.randn(x[::2].shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1))
    assert half < 0.1 * min(shifted, noisy)
    assert shifted > 10 * max(half, 1e-3) and noisy > 10 * max(half, 1e-3)


def test_features_match_reference_stats(metric, shipped):
    mu, _ = feature_stats(classifier_features(shipped[0], digits_16x16()[0]))
    np.testing.assert_allclose(mu, metric.mu)


def test_wrong_shape_is_one_line_error(metric):
    from s4s_export.errors import S4SError

    with pytest.raises(S4SError, match="fd-digits needs"):
        metric(torch.zeros(4, 3, 32, 32))


def test_reference_set_is_the_demo_models_training_data():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_demo.py"
    spec = importlib.util.spec_from_file_location("train_demo", path)
    train_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_demo)
    torch.testing.assert_close(digits_16x16()[0], train_demo.digits_16x16(), rtol=0, atol=0)
