"""Attendance (dose) and the dose-response shape (scenario ``[attendance]``).

Each treated participant's attendance probability is Beta distributed with mean
``expit(a + prognosis_log_odds * prognosis)`` and precision ``precision`` (so attended sessions
are beta-binomial); ``prognosis`` is the participant's standardised latent final outcome, so
a positive ``prognosis_log_odds`` means better-prognosis participants attend more
(self-selection). The intercept ``a`` is solved so the mean attended fraction equals
``mean_fraction`` whatever the selection strength.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from scipy import optimize, special

from trialsim.scenario import Attendance

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


@lru_cache(maxsize=256)
def attendance_intercept(mean_fraction: float, prognosis_log_odds: float) -> float:
    """Solve E[expit(a + b Z)] = mean_fraction for a, Z ~ N(0, 1) (Gauss-Hermite, 60 nodes)."""

    def gap(a: float) -> float:
        return (
            float(_GH_WEIGHTS @ special.expit(a + prognosis_log_odds * _GH_NODES)) - mean_fraction
        )

    return optimize.brentq(gap, -50.0, 50.0, xtol=1e-12)


def draw_attendance(
    treated: np.ndarray,
    prognosis: np.ndarray,
    params: Attendance,
    sessions_offered: int,
    *,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(offered, attended)`` session counts, (B, N) int; zero for controls."""
    offered = np.where(treated, sessions_offered, 0)
    attended = np.zeros_like(offered)
    attended[treated] = draw_sessions(prognosis[treated], params, sessions_offered, rng=rng)
    return offered, attended


def draw_sessions(
    prognosis: np.ndarray, params: Attendance, sessions_offered: int, *, rng: np.random.Generator
) -> np.ndarray:
    """Sessions attended by treated participants of standardised ``prognosis``: beta-binomial,
    p ~ Beta(mean precision, (1 - mean) precision) with ``mean`` as in the module docstring,
    then Binomial(sessions_offered, p)."""
    a = attendance_intercept(params.mean_fraction, params.prognosis_log_odds)
    mean = special.expit(a + params.prognosis_log_odds * prognosis)
    p = rng.beta(mean * params.precision, (1.0 - mean) * params.precision)
    return _binomial_by_inversion(sessions_offered, p, rng.random(p.shape))


@numba.njit(nogil=True, cache=True)
def _binomial_by_inversion(n, p, u):
    """Binomial(n, p[i]) draws by inversion of the uniforms ``u[i]`` (exact up to rounding of
    the cdf, ~n x 1e-16): the cdf is summed upwards from 0 with the pmf recurrence
    ``f(k + 1) = f(k) (n - k) / (k + 1) p / (1 - p)``, for ``p <= 1/2`` (else ``n - k`` of
    the mirrored draw), so the start ``(1 - p)^n >= 2^-n`` never underflows for modest n.
    Faster than numpy's per-element binomial when every draw has its own p."""
    out = np.empty(p.shape, dtype=np.int64)
    p_flat, u_flat, out_flat = p.ravel(), u.ravel(), out.ravel()
    for i in range(p_flat.size):
        mirrored = p_flat[i] > 0.5
        pi = 1.0 - p_flat[i] if mirrored else p_flat[i]
        odds = pi / (1.0 - pi)
        pmf = (1.0 - pi) ** n
        cdf = pmf
        k = 0
        while u_flat[i] > cdf and k < n:
            pmf *= odds * (n - k) / (k + 1)
            k += 1
            cdf += pmf
        out_flat[i] = n - k if mirrored else k
    return out


def dose_factor(fraction: np.ndarray, params: Attendance) -> np.ndarray:
    """Share of the full-attendance effect received at attended fraction ``fraction`` (0..1).

    none: 1 (attendance does not matter); linear: fraction; threshold: 1 at or above
    ``threshold``, else 0; saturating: (1 - exp(-r f)) / (1 - exp(-r)) with r = saturation_rate.
    """
    shape = params.dose_response
    if shape == "none":
        return np.ones_like(fraction, dtype=float)
    if shape == "linear":
        return np.asarray(fraction, dtype=float)
    if shape == "threshold":
        return (fraction >= params.threshold).astype(float)
    r = params.saturation_rate
    return -np.expm1(-r * fraction) / -np.expm1(-r)
