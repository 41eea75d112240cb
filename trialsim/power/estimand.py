"""The estimand of each simulated trial, from its potential outcomes.

The simulator keeps, for every participant, the dose-free part of the final-visit outcome
(:func:`trialsim.simulate.outcomes.untreated_final`), so each trial's potential outcomes
under treatment and under control follow exactly, on the same random numbers as its
observed outcomes (:func:`trialsim.simulate.outcomes.final_outcome_at`); with zero effect
(the null world) the two coincide and the estimand is exactly 0. The target set is the
trial's participants randomised to the compared arm, observed or not (dropout does not
change a potential outcome):

* ``itt``: each at the dose they attended vs the control condition (the contamination
  share of the effect, 0 when the municipality itself was randomised);
* ``full_dose``: each at dose factor 1 vs no treatment;
* ``compliers``: ``itt`` over those who attended at least the per-protocol threshold of the
  sessions (the target of the complier-average analyses).

On the analysis's scale the estimand compares the two mean potential outcomes ``m1``, ``m0``
of the set: ``m1 - m0`` for a continuous outcome or a Gaussian analysis of a count (mean
difference) or binary outcome (risk difference); ``log(m1 / m0)`` for a count analysed on
the log scale (counts: expected counts, the Poisson draw being measurement noise);
``logit(m1) - logit(m0)`` for a binary outcome analysed on the logit scale (marginal log OR).

Two estimands come from these means. The *sample* estimand of a trial applies the contrast to
that trial's means (:func:`sample_estimands`, kept per replicate). The *population*
estimand, the ``truth`` against which bias and coverage are scored, applies it to the means
pooled over all replicates (:func:`population_estimand`): it is what the analytic
:func:`trialsim.power.simulation.true_effect` computes in closed form where one exists (the
mean of the sample estimands differs from it by O(1/n) on the ratio scales), and it is
defined for every outcome type, attendance model and analysis with an estimand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from trialsim.analyse.attendance import DEFAULT_THRESHOLD
from trialsim.data import TrialData
from trialsim.scenario import BinaryOutcome, CountOutcome, Scenario
from trialsim.simulate.outcomes import mean_potential_outcomes

#: estimands computed from potential outcomes (``Analysis.estimand``)
ESTIMANDS = ("itt", "full_dose", "compliers")


@dataclass(frozen=True)
class Scale:
    """The scale an analysis reports its effect on (and its estimand is scored on)."""

    name: str  # e.g. "mean difference", "log odds ratio"
    contrast: str  # "difference" (m1 - m0), "log" (log m1/m0) or "logit"
    ratio: str | None = None  # "RR" / "OR" when exp(estimate) is a ratio worth showing

    def apply(self, m1: np.ndarray, m0: np.ndarray) -> np.ndarray:
        """The contrast of mean potential outcomes ``m1`` (treated) and ``m0`` (control)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.contrast == "log":
                return np.log(m1) - np.log(m0)
            if self.contrast == "logit":
                return special.logit(m1) - special.logit(m0)
            return m1 - m0

    def slopes(self, m1: float, m0: float) -> tuple[float, float]:
        """d(contrast)/d m1 and d(contrast)/d m0 (delta method)."""
        if self.contrast == "log":
            return 1.0 / m1, -1.0 / m0
        if self.contrast == "logit":
            return 1.0 / (m1 * (1.0 - m1)), -1.0 / (m0 * (1.0 - m0))
        return 1.0, -1.0


def analysis_scale(s: Scenario, outcome: str, gaussian: bool) -> Scale:
    """The scale of an analysis (``gaussian``: it models the outcome on its own scale) of
    ``outcome``: one place deciding it from the outcome's type."""
    o = s.outcomes[outcome]
    if isinstance(o, CountOutcome):
        if gaussian:
            return Scale("difference in means", "difference")
        return Scale("log rate ratio", "log", "RR")
    if isinstance(o, BinaryOutcome):
        if gaussian:
            return Scale("risk difference", "difference")
        return Scale("log odds ratio", "logit", "OR")
    return Scale("mean difference", "difference")


@dataclass(frozen=True)
class TrialMeans:
    """Per replicate: mean potential outcomes of the target set under treatment (``treated``)
    and control (``control``), and its size ``n`` (R,); means are NaN when ``n`` is 0."""

    treated: np.ndarray
    control: np.ndarray
    n: np.ndarray

    @staticmethod
    def concat(parts: list[TrialMeans]) -> TrialMeans:
        return TrialMeans(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("treated", "control", "n"))
        )


def trial_means(
    s: Scenario,
    data: TrialData,
    outcome: str,
    estimand: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> TrialMeans:
    """Mean potential outcomes of each simulated trial in ``data`` (simulated from ``s``)
    over the participants of arm ``data.contrast`` (module docstring), at the final visit.

    Costs a few (R, N) array operations: nothing is simulated again."""
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand {estimand!r}: choose from {', '.join(ESTIMANDS)}")
    o = s.outcomes[outcome]
    effects = s.arm_effects(outcome)
    effect = effects[data.contrast - 1]
    target = data.arm == data.contrast
    if estimand == "full_dose":
        treated, control = (effect, 1.0), (effect, 0.0)
    else:
        # the dose each received, and the control condition as the simulator applies it:
        # contamination through staff trained in the municipality (the first active arm's
        # effect), none when the municipality itself was randomised
        c = 0.0 if s.structure.cluster_is_site else s.design.contamination
        treated, control = (effect, data.dose), (effects[0], c)
        if estimand == "compliers":
            fraction = data.sessions_attended / np.maximum(data.sessions_offered, 1)
            target = target & (fraction >= threshold)
    m1, m0, n = mean_potential_outcomes(o, data.untreated[outcome], target, treated, control)
    return TrialMeans(m1, m0, n)


def sample_estimands(means: TrialMeans, scale: Scale) -> np.ndarray:
    """The estimand of each trial on ``scale`` (R,): the contrast of its own means."""
    return scale.apply(means.treated, means.control)


def population_estimand(means: TrialMeans, scale: Scale) -> tuple[float, float]:
    """The estimand of the population the trials sample, ``(value, mcse)``: the contrast of
    the mean potential outcomes pooled over every replicate's target set, and its Monte
    Carlo SE (delta method over replicates, which are independent)."""
    ok = means.n > 0
    n = means.n[ok].astype(float)
    r = int(ok.sum())
    if r == 0:
        return float("nan"), float("nan")
    s1, s0 = means.treated[ok] * n, means.control[ok] * n
    m1, m0 = s1.sum() / n.sum(), s0.sum() / n.sum()
    value = float(scale.apply(np.float64(m1), np.float64(m0)))
    if r < 2 or not np.isfinite(value):
        return value, float("nan")
    g1, g0 = scale.slopes(m1, m0)
    influence = (g1 * (s1 - m1 * n) + g0 * (s0 - m0 * n)) / n.mean()
    return value, float(np.std(influence, ddof=1) / np.sqrt(r))
