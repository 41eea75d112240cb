"""Limits of blinding (DESIGN.md §3 part 7).

Clinician-rated outcomes are scored after baseline by an assessor who is unblinded with
probability ``assessor_unblinded_prob`` (independently at each visit); an unblinded assessor
scores a treated participant ``assessor_bias`` scale units in the favourable direction.
Participants cannot be blinded: self-reported outcomes of treated participants carry the
outcome's ``expectancy_bias`` after baseline. Register outcomes carry no bias.
"""

from __future__ import annotations

import numpy as np

from trialsim.scenario import Blinding


def draw_assessor_blinded(
    params: Blinding, n_reps: int, n: int, n_visits: int, *, rng: np.random.Generator
) -> np.ndarray:
    """(B, N, V) bool: was the assessor blinded? Baseline (before randomisation) always is."""
    blinded = rng.random((n_reps, n, n_visits)) >= params.assessor_unblinded_prob
    blinded[:, :, 0] = True
    return blinded


def bias_shift(
    rater: str, params: Blinding, expectancy_bias: float, treated_post: np.ndarray, blinded
) -> np.ndarray | float:
    """Bias in favourable scale units for each measurement (B, N, V)."""
    if rater == "clinician":
        return params.assessor_bias * (treated_post & ~blinded)
    if rater == "self":
        return expectancy_bias * treated_post
    return 0.0
