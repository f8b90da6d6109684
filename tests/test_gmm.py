"""Exact models: closed-form denoiser, class conditioning, reference ODE solution."""

import math

import pytest
import torch

from s4s_export.gmm import GaussianMixture, reference_solution
from s4s_export.sampler import Sampler
from s4s_export.solvers import make_solver


def single_gaussian(mu=0.3, var=0.2, dim=4):
    return GaussianMixture(torch.full((1, dim), mu), torch.full((1, dim), var), torch.ones(1), (1, 2, 2))


def test_single_gaussian_denoiser_is_linear_shrinkage():
    g = single_gaussian()
    x = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    sigma = torch.tensor([0.5] * 5, dtype=torch.float64)
    expected = 0.3 + 0.2 / (0.2 + 0.25) * (x - 0.3)
    assert torch.allclose(g(x, sigma), expected, atol=1e-14)


def test_reference_solution_matches_closed_form():
    """For one Gaussian, x(sigma) = mu + sqrt((v + sigma^2) / (v + sigma_0^2)) (x_0 - mu)."""
    g = single_gaussian()
    noise = torch.randn(2, 1, 2, 2, dtype=torch.float64)
    s0, s1 = 80.0, 0.002
    ref = reference_solution(g, noise, s0, s1)
    exact = 0.3 + math.sqrt((0.2 + s1**2) / (0.2 + s0**2)) * (noise * s0 - 0.3)
    assert torch.allclose(ref, exact, atol=1e-8)


def test_reference_agrees_with_a_fine_solver(gmm):
    noise = torch.randn(2, *gmm.info.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = reference_solution(gmm, noise, 80.0, 0.002)
    fine = Sampler(gmm, make_solver("unipc3", 400, "edm")).double()(noise)
    assert float((fine - ref).abs().max()) < 1e-6


def test_class_conditioning_restricts_to_class_components():
    means = torch.tensor([[-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])
    g = GaussianMixture(means, torch.full((2, 4), 0.01), torch.ones(2), (1, 2, 2), classes=torch.tensor([0, 1]),
                        conditional=True)
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    sigma = torch.tensor(1.0, dtype=torch.float64)
    out = g(x, sigma, torch.tensor([0, 1, 2]))  # label 2 == num_classes: unconditional
    assert torch.allclose(out[0], torch.full((1, 2, 2), -1.0, dtype=torch.float64), atol=0.02)
    assert torch.allclose(out[1], torch.full((1, 2, 2), 1.0, dtype=torch.float64), atol=0.02)
    assert torch.allclose(out[2], g(x[2:], sigma), atol=1e-14)
    assert g.info.num_classes == 2 and g.info.conditioning == "class"


def test_identity_is_stable_and_sensitive(gmm):
    assert gmm.identity() == gmm.identity()
    # Pinned: solver files and caches record it, so the hashing must not change.
    assert gmm.identity() == "9af40dfc0e09faf667d577fbbd1bc3954ed4c3d6ec525ef83da31f9606b6c4af"
    other = GaussianMixture(gmm.means + 1e-9, gmm.variances, gmm.log_weights.exp(), gmm.info.shape)
    assert other.identity() != gmm.identity()


def test_identity_covers_0_dim_tensors():
    g = single_gaussian()
    g.register_buffer("scale", torch.tensor(1.5, dtype=torch.float64))
    before = g.identity()
    g.scale.fill_(2.5)
    assert g.identity() != before


def test_bad_parameters_rejected():
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(2, 4), torch.ones(2, 3), torch.ones(2), (1, 2, 2))


def test_solver_file_for_the_unconditional_view_is_refused(gmm):
    from s4s_export.errors import S4SError
    from s4s_export.gmm import digits_gmm
    from s4s_export.solverfile import SolverFile, check_model
    from s4s_export.solvers import make_solver

    sf = SolverFile(make_solver("euler", 3), {"model": gmm.identity_dict()})
    check_model(sf, gmm.identity_dict())
    with pytest.raises(S4SError, match="learned for model 'gmm'"):
        check_model(sf, digits_gmm(True).identity_dict())
