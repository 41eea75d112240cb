"""Per-trial estimands from the simulated potential outcomes (trialsim.power.estimand).

Oracles:
* the simulator itself: the potential outcome at the dose a participant received is the
  outcome the simulator measured (exactly, on the same random numbers), in the world with
  the effect and in the world without it;
* the closed form :func:`trialsim.power.simulation.true_effect`: the population estimand
  pooled over the simulated trials equals it within 3 Monte Carlo SEs wherever it is defined
  (continuous, count and binary outcomes; ITT and full dose; dose-response on and off);
* where no closed form exists (counts and binary outcomes with self-selected attendance
  and a dose-response; the complier analyses), a correctly specified analysis has bias
  within 3 Monte Carlo SEs of 0 against it.
"""

from __future__ import annotations

import numpy as np
import pytest

from trialsim.power.estimand import (
    analysis_scale,
    population_estimand,
    sample_estimands,
    trial_means,
)
from trialsim.power.simulation import (
    null_scenario,
    simulate_operating_characteristics,
    true_effect,
)
from trialsim.simulate import simulate_trials
from trialsim.simulate.attendance import dose_factor
from trialsim.simulate.outcomes import final_outcome_at

from .conftest import CLEAN, scenario

RANDOM_ATTENDANCE = "attendance.prognosis_log_odds=0"  # dose independent of the outcome


def _dose(s, data):
    fraction = data.sessions_attended / np.maximum(data.sessions_offered, 1)
    return np.where(data.arm == 1, dose_factor(fraction, s.attendance), s.design.contamination)


@pytest.mark.parametrize("outcome", ["psp", "employed"])
def test_potential_outcomes_are_the_measured_outcomes(outcome):
    # bounded (rounded, clipped, blinded assessors) and binary outcomes are deterministic
    # given the latent scores: the potential outcome at the received dose is the measurement
    s = scenario("blinding.assessor_unblinded_prob=0", outcomes=(outcome,))
    o = s.outcomes[outcome]
    for world in (s, null_scenario(s)):
        data = simulate_trials(world, 64, seed=5, potential_outcomes=True)
        effect = world.arm_effects(outcome)[0]
        np.testing.assert_array_equal(data.dose, _dose(world, data))  # kept as applied
        y = final_outcome_at(o, data.untreated[outcome], effect, data.dose)
        seen = data.observed[:, :, -1]
        np.testing.assert_array_equal(y[seen], data.outcomes[outcome][:, :, -1][seen])
        assert seen.mean() < 1  # dropout hides outcomes; potential outcomes exist for all


def test_count_potential_outcome_is_the_poisson_mean():
    s = scenario(*CLEAN, outcomes=("support_hours",))
    data = simulate_trials(s, 256, seed=6, potential_outcomes=True)
    null = simulate_trials(null_scenario(s), 256, seed=6, potential_outcomes=True)
    # the same trial without the effect: the same dose-free expected counts
    np.testing.assert_array_equal(data.untreated["support_hours"], null.untreated["support_hours"])
    mean = final_outcome_at(
        s.outcomes["support_hours"], data.untreated["support_hours"], 0.95, _dose(s, data)
    )
    y = data.outcomes["support_hours"][:, :, -1]
    # Poisson noise around the expected count: E[y - mean] = 0, var(y - mean) = E[mean]
    gap = (y - mean).mean()
    assert abs(gap) < 3 * np.sqrt(mean.mean() / y.size)


def test_no_effect_means_an_estimand_of_exactly_zero():
    s = null_scenario(scenario(*CLEAN, outcomes=("psp", "employed", "support_hours")))
    data = simulate_trials(s, 64, seed=7, potential_outcomes=True)
    for outcome in s.outcomes:
        for gaussian in (True, False):
            scale = analysis_scale(s, outcome, gaussian)
            for estimand in ("itt", "full_dose", "compliers"):
                means = trial_means(s, data, outcome, estimand)
                assert (sample_estimands(means, scale) == 0).all()
                assert population_estimand(means, scale)[0] == 0


ORACLE_CASES = [
    (outcome, gaussian, estimand, dose_response)
    for outcome, scales in (
        ("psp", (True,)),
        ("support_hours", (True, False)),
        ("employed", (True, False)),
    )
    for gaussian in scales
    for estimand in ("itt", "full_dose")
    for dose_response in ("none", "linear", "threshold")
]


@pytest.fixture(scope="module")
def oracle_trials():
    """2048 SFT trials per dose-response, continuous PSP, random attendance."""
    out = {}
    for dose_response in ("none", "linear", "threshold"):
        s = scenario(
            *CLEAN,
            RANDOM_ATTENDANCE,
            f"attendance.dose_response={dose_response}",
            "design.contamination=0.1",
            outcomes=("psp", "support_hours", "employed"),
        )
        out[dose_response] = (s, simulate_trials(s, 2048, seed=11, potential_outcomes=True))
    return out


@pytest.mark.parametrize(("outcome", "gaussian", "estimand", "dose_response"), ORACLE_CASES)
def test_population_estimand_matches_the_closed_form(
    oracle_trials, outcome, gaussian, estimand, dose_response
):
    s, data = oracle_trials[dose_response]
    scale = analysis_scale(s, outcome, gaussian)
    means = trial_means(s, data, outcome, estimand)
    value, mcse = population_estimand(means, scale)
    analytic = true_effect(s, outcome, estimand, mean_scale=gaussian)
    assert np.isfinite(analytic) and analytic != 0
    # 3 MCSE, plus 1e-9 where the estimand is the same in every trial (MCSE 0), plus the
    # closed form's own Monte Carlo error (its dose sample: relative SE < 1e-3)
    assert abs(value - analytic) <= 3 * mcse + 1e-3 * abs(analytic) + 1e-9, (value, mcse, analytic)
    if scale.contrast == "difference":
        # on a difference scale the mean of the per-trial (sample) estimands is the same
        # target; on ratio scales it differs by O(1/n) (non-linear contrast of trial means)
        per_trial = sample_estimands(means, scale)
        se = per_trial.std(ddof=1) / np.sqrt(len(per_trial))
        assert abs(per_trial.mean() - analytic) <= 3 * se + 1e-3 * abs(analytic) + 1e-9


def test_bounded_scale_estimand_includes_rounding_and_clipping():
    # EQ-5D is clipped at its ceiling of 1 (20 % there at baseline): the effect of the
    # simulated trial is smaller than the closed form, which ignores the bounds
    s = scenario(*CLEAN[3:], RANDOM_ATTENDANCE, outcomes=("eq5d",))
    data = simulate_trials(s, 512, seed=12, potential_outcomes=True)
    value, mcse = population_estimand(
        trial_means(s, data, "eq5d", "full_dose"), analysis_scale(s, "eq5d", True)
    )
    analytic = true_effect(s, "eq5d", "full_dose")
    assert value < analytic - 10 * mcse
    assert 0 < value


@pytest.mark.parametrize(
    ("outcome", "analysis"), [("employed", "logistic"), ("support_hours", "poisson")]
)
def test_defined_where_the_closed_form_is_not(outcome, analysis):
    # self-selected attendance (the SFT default) with a linear dose-response: no closed
    # form for the marginal log OR / log RR, but the simulated trials define it; the
    # standardised GLMs target it without bias. measured (seed 13, 600 reps):
    # logistic bias +0.033 +- 0.018 (truth 0.516 +- 0.008), poisson +0.002 +- 0.004
    s = scenario(*CLEAN, "outcomes.employed.odds_ratio=2", "outcomes.support_hours.rate_ratio=0.7",
                 outcomes=(outcome,))  # fmt: skip
    assert s.attendance.prognosis_log_odds != 0 and s.attendance.dose_response == "linear"
    assert np.isnan(true_effect(s, outcome, "itt"))
    tables = []
    (oc,), _ = simulate_operating_characteristics(
        s, [analysis], reps=600, seed=13, replicates=tables
    )
    assert np.isnan(oc.truth_analytic)
    assert np.isfinite(oc.truth) and np.isfinite(oc.coverage) and np.isfinite(oc.bias)
    assert abs(oc.bias) < 3 * oc.bias_mcse, oc
    assert abs(oc.coverage - 0.95) < 3 * np.sqrt(0.05 * 0.95 / oc.reps), oc
    effect = tables[0][tables[0]["world"] == "effect"]
    assert effect["estimand"].notna().all() and (effect["truth"] == oc.truth).all()


def test_complier_estimand_scores_the_complier_analyses():
    # a threshold dose-response at the analyses' threshold (0.6): compliers get the full
    # effect, so the IV complier analysis is unbiased and per-protocol (self-selected
    # compliers vs all controls) is not. measured (seed 14, 400 reps): cace-binary
    # -0.04 +- 0.12, per-protocol +4.22 +- 0.07
    s = scenario(*CLEAN, "attendance.dose_response=threshold", "attendance.prognosis_log_odds=1")
    ocs, _ = simulate_operating_characteristics(
        s, ["cace-binary", "per-protocol"], reps=400, seed=14
    )
    cace, pp = ocs
    assert cace.truth == pytest.approx(7.0, abs=1e-9)  # every complier at full effect
    assert abs(cace.bias) < 3 * cace.bias_mcse
    assert pp.bias > 10 * pp.bias_mcse


def test_a_scenario_without_effect_has_truth_zero_for_every_estimand():
    s = scenario(*CLEAN, "outcomes.psp.effect=0")
    ocs, _ = simulate_operating_characteristics(
        s, ["ancova", "as-treated", "per-protocol"], reps=32, seed=15
    )
    assert [oc.truth for oc in ocs] == [0.0, 0.0, 0.0]
