"""Monotone dropout per visit and arm (scenario ``[dropout]``).

Before each follow-up visit a participant still in the study drops out with probability
``expit(alpha + treated_log_odds * treated + lp)``, where the linear predictor ``lp`` is

* MCAR: 0;
* MAR: -baseline_log_odds * (standardised baseline of the primary outcome, favourable up)
  + attendance_log_odds * (share of offered sessions missed, treated only);
* MNAR: MAR plus -outcome_log_odds * (standardised unobserved final outcome, favourable up).

``alpha`` is solved once per scenario, on a fixed calibration sample drawn by the simulator
itself, so that the share completing the final visit equals ``completion_target``.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from trialsim.scenario import Dropout


def linear_predictor(
    params: Dropout,
    treated: np.ndarray,
    baseline_z: np.ndarray,
    final_z: np.ndarray,
    missed_fraction: np.ndarray,
) -> np.ndarray:
    """Participant part of the dropout log-odds, (B, N)."""
    lp = params.treated_log_odds * treated
    if params.mechanism in ("MAR", "MNAR"):
        lp = lp - params.baseline_log_odds * baseline_z
        lp = lp + params.attendance_log_odds * missed_fraction * treated
    if params.mechanism == "MNAR":
        lp = lp - params.outcome_log_odds * final_z
    return lp


def calibrate_intercept(params: Dropout, lp: np.ndarray, n_followups: int) -> float:
    """Intercept giving mean completion ``completion_target`` at the last visit."""
    if params.completion_target >= 1.0:
        return -np.inf
    lp = lp.ravel()

    def gap(alpha: float) -> float:
        stay = special.expit(-(alpha + lp))
        return float(np.mean(stay**n_followups)) - params.completion_target

    return optimize.brentq(gap, -60.0, 60.0, xtol=1e-10)


def draw_observed(
    alpha: float, lp: np.ndarray, n_visits: int, *, rng: np.random.Generator
) -> np.ndarray:
    """(B, N, V) bool: measured at the visit (baseline always; monotone afterwards)."""
    hazard = special.expit(alpha + lp)
    u = rng.random((*lp.shape, n_visits - 1))
    observed = np.ones((*lp.shape, n_visits), dtype=bool)
    # visit by visit: a (B, N, 1) broadcast would make numpy loop over the few visits only
    for t in range(1, n_visits):
        np.logical_and(observed[..., t - 1], u[..., t - 1] >= hazard, out=observed[..., t])
    return observed
