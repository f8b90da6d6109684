"""Noise schedules: decreasing sigma grids from sigma_max to sigma_min, as float64 arrays.

Every function returns n+1 sigmas (n steps). VP time schedules use EDM's VP parameterisation
(beta_d = 19.9, beta_min = 0.1) to map between t and sigma.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import S4SError, choice_error

VP_BETA_D, VP_BETA_MIN = 19.9, 0.1


def vp_sigma(t: np.ndarray) -> np.ndarray:
    """sigma(t) of the VP SDE."""
    return np.sqrt(np.expm1(0.5 * VP_BETA_D * t**2 + VP_BETA_MIN * t))


def vp_t(sigma: np.ndarray) -> np.ndarray:
    """Inverse of `vp_sigma`."""
    return (np.sqrt(VP_BETA_MIN**2 + 2 * VP_BETA_D * np.log1p(sigma**2)) - VP_BETA_MIN) / VP_BETA_D


def edm(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """EDM's schedule: uniform in sigma^(1/rho)."""
    ramp = np.linspace(0.0, 1.0, n + 1)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def logsnr(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """Uniform in log-SNR lambda = -log(sigma)."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), n + 1))


def time_uniform(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """Uniform in VP time t."""
    return vp_sigma(np.linspace(vp_t(np.float64(sigma_max)), vp_t(np.float64(sigma_min)), n + 1))


def time_quadratic(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """Uniform in sqrt(t) of VP time (DPM-Solver's time_quadratic)."""
    t0, t1 = np.sqrt(vp_t(np.float64(sigma_max))), np.sqrt(vp_t(np.float64(sigma_min)))
    return vp_sigma(np.linspace(t0, t1, n + 1) ** 2)


SCHEDULES = {"edm": edm, "logsnr": logsnr, "time-uniform": time_uniform, "time-quadratic": time_quadratic}


def validate_sigmas(sigmas: Sequence[float] | np.ndarray, what: str = "sigmas", zero_end: bool = False,
                    inf_start: bool = False) -> np.ndarray:
    """Check a grid is finite, positive and strictly decreasing; return it as float64.

    `zero_end` also allows a last sigma of 0 (a final denoise step), `inf_start` a first sigma of
    inf (flow models start at t = 1); both are for tables in a model space (docs/solvers.md).
    """
    s = np.asarray(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size < 2:
        raise S4SError(f"{what} must be a list of at least 2 values, got shape {s.shape}")
    inner = s[1 if inf_start and s[0] == np.inf else 0: -1 if zero_end and s[-1] == 0 else None]
    if not np.all(np.isfinite(inner)) or np.any(inner <= 0):
        ends = " except a first inf" * inf_start + " except a last 0" * zero_end
        raise S4SError(f"{what} must be finite and positive{ends} (sigma_min > 0), got {s.tolist()}")
    if np.any(np.diff(s) >= 0):
        raise S4SError(f"{what} must be strictly decreasing from sigma_max to sigma_min, got {s.tolist()}")
    return s


def make_schedule(name: str | Sequence[float], n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """n+1 sigmas from sigma_max to sigma_min: a named schedule, or an explicit list with n+1 entries and those ends."""
    if n < 1:
        raise S4SError(f"a schedule needs at least 1 step, got {n}")
    if not isinstance(name, str):
        s = validate_sigmas(name, "explicit sigmas")
        if s.size != n + 1:
            raise S4SError(f"explicit sigmas have {s.size} entries; this solver needs {n + 1} for {n} steps")
        if not (np.isclose(s[0], sigma_max, rtol=1e-5, atol=0) and np.isclose(s[-1], sigma_min, rtol=1e-5, atol=0)):
            raise S4SError(f"explicit sigmas run from {s[0]:g} to {s[-1]:g}, but the model's range is "
                           f"sigma_max={sigma_max:g} to sigma_min={sigma_min:g}; start the list at {sigma_max:g} "
                           f"and end it at {sigma_min:g}")
        return s
    if name not in SCHEDULES:
        raise choice_error("schedule", name, [*SCHEDULES, "an explicit comma-separated list of sigmas"])
    if not 0 < sigma_min < sigma_max:
        raise S4SError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    return validate_sigmas(SCHEDULES[name](n, sigma_min, sigma_max), f"{name} schedule")


def parse_schedule(text: str) -> str | list[float]:
    """CLI form: a schedule name, or comma-separated sigmas."""
    if text in SCHEDULES:
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise choice_error("schedule", text, [*SCHEDULES, "a comma-separated list of sigmas"]) from None


# --- model spaces: how a model scales its input (docs/solvers.md, "Model spaces") -------------
#
# Every model state is x = x0 + sigma * eps (EDM's VE convention). A model space rescales it by
# c(sigma) before the network sees it: "ve" c = 1 (EDM), "vp" c = 1/sqrt(1 + sigma^2) (discrete-time
# DDPM models: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps), "flow" c = 1/(1 + sigma)
# (rectified flow: x_t = (1 - t) x0 + t eps with sigma = t/(1 - t)). c(inf) = 0 and the noise level
# c(sigma) * sigma stays finite (1 at sigma = inf), so flow models can start at t = 1.

SPACES = ("ve", "vp", "flow")


def space_scale(space: str, sigma):
    """c(sigma): the factor from the VE state to the model's input. Works on floats, numpy arrays and tensors."""
    if space == "ve":
        return 1.0
    if space == "vp":
        return (1 + sigma * sigma) ** -0.5
    if space == "flow":
        return 1 / (1 + sigma)
    raise choice_error("model space", space, list(SPACES))


def noise_level(space: str, sigma: float) -> float:
    """c(sigma) * sigma: the noise coefficient of the model's input (VP sigma, flow t); 1 at sigma = inf."""
    sigma = float(sigma)
    if space == "ve":
        return sigma
    if np.isinf(sigma):
        return 1.0
    return sigma * float(space_scale(space, sigma))
