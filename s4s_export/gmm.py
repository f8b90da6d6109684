"""Exact models: Gaussian mixtures with closed-form denoisers, and a float64 reference ODE solution.

For data x0 ~ sum_k w_k N(mu_k, diag(v_k)), the noisy marginal at sigma is
sum_k w_k N(mu_k, diag(v_k + sigma^2)) and the ideal denoiser is the posterior mean
D(x, sigma) = sum_k r_k(x) [mu_k + v_k / (v_k + sigma^2) (x - mu_k)].
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from safetensors.torch import load_file, safe_open
from scipy.integrate import solve_ivp

from .denoiser import Denoiser, ModelInfo, sigma_batch
from .errors import S4SError
from .paths import DIGITS_GMM


class GaussianMixture(Denoiser):
    """A diagonal Gaussian mixture with its exact denoiser, computed in float64.

    `classes[k]` is component k's class; with class conditioning a label restricts the
    posterior to that class's components (label == num_classes or cond=None: all).
    """

    def __init__(self, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor,
                 shape: tuple[int, int, int], name: str = "gmm", classes: torch.Tensor | None = None,
                 conditional: bool = False, sigma_min: float = 0.002, sigma_max: float = 80.0):
        super().__init__()
        k, dim = means.shape
        if variances.shape != (k, dim) or weights.shape != (k,) or math.prod(shape) != dim:
            raise ValueError("means [K,d], variances [K,d], weights [K] and shape with prod(shape) = d expected")
        classes = torch.zeros(k, dtype=torch.int64) if classes is None else classes.to(torch.int64)
        self.register_buffer("means", means.double())
        self.register_buffer("variances", variances.double())
        self.register_buffer("log_weights", torch.log(weights.double() / weights.double().sum()))
        self.register_buffer("classes", classes)
        num_classes = int(classes.max()) + 1 if conditional else 0
        self.info = ModelInfo(name, tuple(shape), sigma_min, sigma_max, "class" if conditional else "none",
                              num_classes, float(means.std()), "exact Gaussian mixture denoiser")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        xf = x.reshape(b, 1, -1).double()
        s2 = sigma_batch(sigma, x).reshape(b, 1, 1).double() ** 2
        var = self.variances + s2  # [B,K,d]
        diff = xf - self.means
        logp = self.log_weights - 0.5 * ((diff**2 / var) + torch.log(var)).sum(-1)  # [B,K]
        if cond is not None and self.info.num_classes:
            cond = cond.reshape(-1, 1)
            keep = (self.classes == cond) | (cond == self.info.num_classes)
            logp = logp.masked_fill(~keep, -math.inf)
        r = torch.softmax(logp, dim=-1).unsqueeze(-1)
        post = self.means + self.variances / var * diff
        return (r * post).sum(1).reshape(x.shape).to(x.dtype)


def digits_gmm(conditional: bool = False) -> GaussianMixture:
    """An image-shaped exact model: one diagonal Gaussian per sklearn digit class, 1x8x8 in [-1, 1]."""
    if not DIGITS_GMM.exists():
        raise S4SError(f"missing {DIGITS_GMM}; recreate it with: python scripts/make_gmm_digits.py")
    t = load_file(str(DIGITS_GMM))
    with safe_open(str(DIGITS_GMM), "pt") as f:
        shape = tuple(json.loads(f.metadata()["shape"]))
    name = "gmm-cond" if conditional else "gmm"
    return GaussianMixture(t["means"], t["variances"], t["weights"], shape, name, t["classes"], conditional)


def reference_solution(denoiser: Denoiser, noise: torch.Tensor, sigma_start: float, sigma_end: float,
                       cond: torch.Tensor | None = None, rtol: float = 1e-10, atol: float = 1e-10) -> torch.Tensor:
    """Solve the probability-flow ODE from sigma_start * noise to sigma_end accurately (float64).

    Integrates dx/du = x - D(x, e^u) in u = log(sigma) with an adaptive 8th-order
    Runge-Kutta method (DOP853). Each sample is solved on its own so steps adapt per sample.
    """
    out = []
    for i in range(noise.shape[0]):
        shape = (1, *noise.shape[1:])
        c = None if cond is None else cond[i : i + 1]

        def rhs(u: float, y: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(y).reshape(shape)
            with torch.no_grad():
                d = denoiser(x, torch.tensor([math.exp(u)], dtype=torch.float64), c).double()
            return (x - d).reshape(-1).numpy()

        y0 = (noise[i].double() * sigma_start).reshape(-1).numpy()
        sol = solve_ivp(rhs, (math.log(sigma_start), math.log(sigma_end)), y0, method="DOP853", rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"reference ODE solve failed: {sol.message}")
        out.append(torch.from_numpy(sol.y[:, -1]).reshape(noise.shape[1:]))
    return torch.stack(out)
