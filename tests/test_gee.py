"""Exchangeable GEE (trialsim.analyse.gee) against statsmodels GEE, and its type-I error.

Oracle: statsmodels ``GEE(..., cov_struct=Exchangeable())`` fitted to convergence
(``ctol=1e-12``) on the same rows with the same clusters (each control its own cluster):
coefficients, working correlation and the Mancl-DeRouen ``cov_type="bias_reduced"`` SE.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

from trialsim.analyse import gee, glm
from trialsim.analyse.attendance import robust_clusters
from trialsim.analyse.registry import get_analysis
from trialsim.scenario import load_scenario
from trialsim.simulate.trial import simulate_trials

SCENARIO = "scenarios/sft-19m.toml"
BASE = [
    "dropout.completion_target=1",
    'attendance.dose_response="none"',
    "outcomes.employed.prevalence=0.3",
]
NULL = ["outcomes.support_hours.rate_ratio=1.0", "outcomes.employed.odds_ratio=1.0"]


def _simulate(overrides, reps, seed):
    s = load_scenario(SCENARIO, [*BASE, *overrides])
    return simulate_trials(s.with_outcomes(["psp", "support_hours", "employed"]), reps, seed=seed)


@pytest.mark.parametrize("family,outcome", [("poisson", "support_hours"), ("logistic", "employed")])
def test_gee_against_statsmodels(family, outcome):
    data = _simulate(["dropout.completion_target=0.7", "groups.icc_group=0.2"], 4, seed=3)
    a, X = glm._design(data, outcome, -1, log_baseline=family == "poisson")
    cluster = robust_clusters(a)
    fit = gee.fit_gee(a.y, X, a.mask, cluster, family)
    assert fit.converged.all()
    if family == "poisson":
        est = gee.gee_poisson_rate_ratio(data, outcome)
    else:
        est = gee.gee_logistic_odds_ratio(data, outcome, scale="conditional", vcov="CR3")
    sm_family = sm.families.Poisson() if family == "poisson" else sm.families.Binomial()
    for r in range(len(a.y)):
        rows = a.mask[r]
        ids = np.where(cluster[r] >= 0, cluster[r], 100_000 + np.arange(cluster.shape[1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sm.GEE(
                a.y[r, rows],
                X[r, rows],
                groups=ids[rows],
                family=sm_family,
                cov_struct=sm.cov_struct.Exchangeable(),
            ).fit(cov_type="bias_reduced", ctol=1e-12, maxiter=500)
        np.testing.assert_allclose(fit.beta[r], res.params, atol=1e-8)
        assert fit.alpha[r] == pytest.approx(res.cov_struct.dep_params, abs=1e-8)
        assert est.se[r] == pytest.approx(np.sqrt(res.cov_params()[1, 1]), rel=1e-7)
        assert est.estimate[r] == pytest.approx(res.params[1], abs=1e-8)


@pytest.fixture(scope="module")
def null_data():
    return _simulate(NULL, 512, seed=8)


@pytest.mark.parametrize(
    "name,outcome", [("gee-poisson", "support_hours"), ("gee-logistic", "employed")]
)
def test_gee_type_one_error_near_nominal(null_data, name, outcome):
    est = get_analysis(name).run(null_data, outcome)
    assert est.failed.sum() <= 5  # failures (non-convergence, as in statsmodels) are counted
    rate = np.mean(est.p_value[~est.failed] < 0.05)
    # 512 reps: MC SE of a 5 % rate is 0.0096; allow 3 MC SE either side
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / len(est)), rate


def test_gee_recovers_the_effects():
    data = _simulate(
        ["outcomes.support_hours.rate_ratio=0.7", "outcomes.employed.odds_ratio=2.0"], 256, seed=7
    )
    for est, truth in [
        (gee.gee_poisson_rate_ratio(data, "support_hours"), np.log(0.7)),
        (gee.gee_logistic_odds_ratio(data, "employed"), np.log(2.0)),
    ]:
        ok = ~est.failed
        mcse = est.estimate[ok].std(ddof=1) / np.sqrt(ok.sum())
        assert abs(est.estimate[ok].mean() - truth) < 3 * mcse
