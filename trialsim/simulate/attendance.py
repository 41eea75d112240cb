"""Attendance (dose) and the dose-response shape (DESIGN.md §3 part 4).

Each treated participant's attendance probability is Beta distributed with mean
``expit(a + prognosis_log_odds * prognosis)`` and precision ``precision`` (so attended sessions
are beta-binomial); ``prognosis`` is the participant's standardised latent final outcome, so
a positive ``prognosis_log_odds`` means better-prognosis participants attend more
(self-selection). The intercept ``a`` is solved so the mean attended fraction equals
``mean_fraction`` whatever the selection strength.
"""

from __future__ import annotations

from functools import lru_cache

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
    a = attendance_intercept(params.mean_fraction, params.prognosis_log_odds)
    mean = special.expit(a + params.prognosis_log_odds * prognosis[treated])
    p = rng.beta(mean * params.precision, (1.0 - mean) * params.precision)
    offered = np.where(treated, sessions_offered, 0)
    attended = np.zeros_like(offered)
    attended[treated] = rng.binomial(sessions_offered, p)
    return offered, attended


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
