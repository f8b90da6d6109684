"""Schedules: endpoints, monotonicity, validation errors."""

import numpy as np
import pytest

from s4s_export.errors import S4SError
from s4s_export.schedules import SCHEDULES, make_schedule, parse_schedule, validate_sigmas, vp_sigma, vp_t


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_endpoints_and_monotone(name):
    s = make_schedule(name, 7, 0.002, 80.0)
    assert s.shape == (8,)
    assert np.isclose(s[0], 80.0) and np.isclose(s[-1], 0.002)
    assert np.all(np.diff(s) < 0)


def test_logsnr_is_uniform_in_log_sigma():
    s = make_schedule("logsnr", 5, 0.01, 10.0)
    assert np.allclose(np.diff(np.log(s)), np.log(0.01 / 10.0) / 5)


def test_edm_matches_formula():
    s = make_schedule("edm", 4, 0.002, 80.0)
    i = np.arange(5) / 4
    assert np.allclose(s, (80 ** (1 / 7) + i * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7)


def test_vp_time_roundtrip():
    sig = np.array([0.002, 0.5, 10.0, 80.0])
    assert np.allclose(vp_sigma(vp_t(sig)), sig)


def test_explicit_list_and_errors():
    assert np.allclose(make_schedule([3.0, 2.0, 1.0], 2, 1.0, 3.0), [3, 2, 1])
    with pytest.raises(S4SError, match="strictly decreasing"):
        validate_sigmas([1.0, 2.0])
    with pytest.raises(S4SError, match="positive"):
        validate_sigmas([1.0, 0.0])
    with pytest.raises(S4SError, match="needs 3"):
        make_schedule([3.0, 1.0], 2, 1.0, 3.0)
    with pytest.raises(S4SError, match="unknown schedule 'cosine'"):
        make_schedule("cosine", 3, 0.002, 80.0)
    with pytest.raises(S4SError, match="sigma_min < sigma_max"):
        make_schedule("edm", 3, 80.0, 0.002)
    assert parse_schedule("80,1,0.002") == [80.0, 1.0, 0.002]
    with pytest.raises(S4SError, match="unknown schedule"):
        parse_schedule("fast")


@pytest.mark.parametrize("sigmas", [[200.0, 1.0, 0.002], [80.0, 1.0, 0.01], [79.0, 1.0, 0.002]])
def test_explicit_list_must_span_the_model_range(sigmas):
    with pytest.raises(S4SError, match="range is sigma_max=80 to sigma_min=0.002; start the list at 80 and end it at"):
        make_schedule(sigmas, 2, 0.002, 80.0)
    assert make_schedule([80.0, 1.0, 0.002], 2, 0.002, 80.0)[0] == 80.0
