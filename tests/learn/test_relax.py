"""The relaxed noise: radius, projection onto the ball, accept-if-better."""

import math

import torch

from s4s_export.learn.relax import RelaxedNoise, project, relaxation_radius


def test_radius_formula():
    # method §4.2: CIFAR-10 (dim 3072), N = 5, K = 3 -> m = 12 -> rho ~ 0.11
    assert math.isclose(relaxation_radius(12, 3072), 12 ** -2.5 * math.sqrt(3072))
    assert 0.10 < relaxation_radius(12, 3072) < 0.12
    assert relaxation_radius(12, 64, c_r=2.0) == 2 * relaxation_radius(12, 64)


def test_projection_keeps_noise_inside_the_ball():
    g = torch.Generator().manual_seed(0)
    center = torch.randn(50, 1, 8, 8, generator=g)
    radius = 0.3
    far = center + torch.randn(50, 1, 8, 8, generator=g) * torch.logspace(-3, 1, 50).reshape(-1, 1, 1, 1)
    out = project(far, center, radius)
    dist = (out - center).flatten(1).norm(dim=1)
    far_dist = (far - center).flatten(1).norm(dim=1)
    assert torch.all(dist <= radius * (1 + 1e-6))
    inside = far_dist <= radius
    assert inside.any() and (~inside).any()
    assert torch.equal(out[inside], far[inside])  # points already inside do not move
    assert torch.allclose(dist[~inside], torch.full_like(dist[~inside], radius), rtol=1e-5)  # outside: onto the sphere


def test_steps_stay_in_ball_and_only_improvements_are_kept():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64)
    relax = RelaxedNoise(z, radius=0.05, step_fraction=0.5)
    idx = torch.arange(8)
    for _ in range(20):  # many steps in a fixed direction: the ball must hold them
        cur = relax.get(idx)
        cand = relax.propose(idx, cur, -torch.ones_like(cur))
        assert torch.all((cand - z).flatten(1).norm(dim=1) <= 0.05 * (1 + 1e-6))
        relax.accept(idx, cand, torch.zeros(8), torch.ones(8))
    assert torch.all((relax.z - z).flatten(1).norm(dim=1) <= 0.05 * (1 + 1e-6))
    before, steps = relax.z.clone(), relax.step.clone()
    cand = relax.propose(idx, relax.get(idx), torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64))
    new_loss = torch.tensor([0.0, 2.0, float("nan"), 0.5, 2.0, 0.0, 2.0, 0.9])
    relax.accept(idx, cand, new_loss, torch.ones(8))
    kept = torch.tensor([True, False, False, True, False, True, False, True])
    assert torch.equal(relax.z[kept], cand[kept]) and torch.equal(relax.z[~kept], before[~kept])
    assert torch.equal(relax.step[~kept], steps[~kept] / 2) and torch.equal(relax.step[kept], steps[kept])
