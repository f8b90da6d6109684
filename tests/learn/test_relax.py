"""The relaxed noise: radius, projection onto the ball, accept-if-better."""

import math

import torch

from s4s_export.learn.relax import RelaxedNoise, project, relaxation_radius


def test_radius_formula():
    # docs/learning.md: CIFAR-10 (dim 3072), N = 5, K = 3 -> m = 12 -> rho ~ 0.11
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
    assert relax.settle(idx, torch.full((8,), 10.0)).all()  # first visit: the true noise is the accepted point
    loss = 10.0
    for _ in range(20):  # many improving steps in a fixed direction: the ball must hold them
        relax.move(idx, -torch.ones(8, 1, 4, 4, dtype=torch.float64))
        assert torch.all((relax.z - z).flatten(1).norm(dim=1) <= 0.05 * (1 + 1e-9))
        loss -= 0.1
        assert relax.settle(idx, torch.full((8,), loss)).all()
    assert relax.accepted == relax.proposed == 160
    anchor, steps = relax.z.clone(), relax.step.clone()
    relax.move(idx, torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64))
    moved = relax.z.clone()
    assert not torch.equal(moved, anchor)
    new_loss = torch.tensor([0.0, 20.0, float("nan"), 0.5, 20.0, 0.0, 20.0, 0.9])
    kept = relax.settle(idx, new_loss)
    assert torch.equal(kept, torch.tensor([True, False, False, True, False, True, False, True]))
    assert torch.equal(relax.z[kept], moved[kept]) and torch.equal(relax.anchor[kept], moved[kept])
    assert torch.equal(relax.z[~kept], anchor[~kept])  # rejected: back to the last accepted point
    assert torch.equal(relax.step[~kept], steps[~kept] / 2) and torch.equal(relax.step[kept], steps[kept])
    assert relax.proposed == 168 and relax.accepted == 164
