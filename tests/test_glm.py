"""GLMs for counts and binary outcomes: truth recovery and type-I error by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from trialsim.analyse import glm
from trialsim.scenario import load_scenario
from trialsim.simulate.trial import simulate_trials

SCENARIO = "scenarios/sft-19m.toml"
# dose_response "none": every treated participant receives the full effect, so the ITT
# estimands are log(rate_ratio) and the marginal log(odds_ratio) (see the glm docstrings)
BASE = [
    "dropout.completion_target=1",
    'attendance.dose_response="none"',
    "outcomes.employed.prevalence=0.3",
]


def _simulate(overrides, reps, seed):
    scenario = load_scenario(SCENARIO, [*BASE, *overrides]).with_outcomes(
        ["psp", "support_hours", "employed"]
    )
    return simulate_trials(scenario, reps, seed=seed)


def _mcse(est):
    return est.estimate.std(ddof=1) / np.sqrt(len(est))


@pytest.fixture(scope="module")
def effect_data():
    return _simulate(
        ["outcomes.support_hours.rate_ratio=0.7", "outcomes.employed.odds_ratio=2.0"], 512, seed=7
    )


@pytest.fixture(scope="module")
def null_data():
    return _simulate(
        ["outcomes.support_hours.rate_ratio=1.0", "outcomes.employed.odds_ratio=1.0"], 512, seed=8
    )


def test_poisson_recovers_log_rate_ratio(effect_data):
    est = glm.poisson_rate_ratio(effect_data, "support_hours")
    assert not est.failed.any()
    # measured (seed 7, 512 reps): bias +0.003 +- 0.005
    assert abs(est.estimate.mean() - np.log(0.7)) < 3 * _mcse(est)


def test_logistic_marginal_recovers_log_odds_ratio(effect_data):
    marginal = glm.logistic_odds_ratio(effect_data, "employed")
    conditional = glm.logistic_odds_ratio(effect_data, "employed", scale="conditional")
    # measured (seed 7, 512 reps): marginal bias +0.012 +- 0.010; conditional +0.18 +- 0.012
    assert abs(marginal.estimate.mean() - np.log(2.0)) < 3 * _mcse(marginal)
    # non-collapsibility: the baseline-conditional log OR is further from 0
    assert conditional.estimate.mean() - np.log(2.0) > 5 * _mcse(conditional)


@pytest.mark.parametrize(
    "func,outcome",
    [
        pytest.param(
            glm.poisson_rate_ratio,
            "support_hours",
            # measured 8.6 % (seed 8): the CR1 sandwich underestimates the SE of the log rate
            # ratio by ~10 % with log-normal overdispersion (sd_log 0.8) at n = 340, also
            # without any group ICC (7.8 %); needs a bias-reduced (CR2) sandwich
            marks=pytest.mark.xfail(strict=True, reason="CR1 sandwich anticonservative"),
        ),
        (glm.logistic_odds_ratio, "employed"),
    ],
)
def test_type_one_error_near_nominal(null_data, func, outcome):
    est = func(null_data, outcome)
    rate = np.mean(est.p_value < 0.05)
    # 512 reps: MC SE of a 5 % rate is 0.0096; allow 3 MC SE either side
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / len(est)), rate
