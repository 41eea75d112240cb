"""Limits of blinding (scenario ``[blinding]``).

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


def bias_terms(rater: str, params: Blinding, expectancy_bias: float) -> tuple[float, float]:
    """Bias in scale units on a treated participant's follow-up measurement, as
    ``(when the assessor is unblinded, always)``: an unblinded clinician's assessor bias, or
    the expectancy bias of a self-report; none for registry outcomes."""
    if rater == "clinician":
        return params.assessor_bias, 0.0
    if rater == "self":
        return 0.0, expectancy_bias
    return 0.0, 0.0
