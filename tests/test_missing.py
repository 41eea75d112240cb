"""Missing-data analyses: MAR likelihood against a direct maximisation, bias by simulation,
and the delta-adjusted tipping point."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from trialsim.analyse import missing
from trialsim.analyse.prepare import ancova_arrays
from trialsim.scenario import load_scenario
from trialsim.simulate.trial import simulate_trials

SCENARIO = "scenarios/sft-19m.toml"
CLEAN = ["blinding.assessor_unblinded_prob=0"]
# MAR dropout driven hard by baseline and attendance; attendance not self-selected, so the
# outcome is linear in attendance given the covariates (see mar_all_visits' docstring)
MAR = [
    *CLEAN,
    'dropout.mechanism="MAR"',
    "dropout.attendance_log_odds=3.0",
    "dropout.baseline_log_odds=1.0",
    "dropout.completion_target=0.6",
    "attendance.prognosis_log_odds=0.0",
]


def _simulate(overrides, reps, seed):
    return simulate_trials(
        load_scenario(SCENARIO, overrides).with_outcomes(["psp"]), reps, seed=seed
    )


@pytest.fixture(scope="module")
def mar_data():
    return _simulate(MAR, 512, seed=20240601)


def _direct_mle(W, responses, observed):
    """Maximise the observed-data likelihood of responses (n, K) ~ N(W B, Sigma) directly.

    Monotone patterns: a row observed on the first m responses contributes the m-variate
    normal density of those. Parameters: B (p x K) and the Cholesky factor of Sigma (log
    diagonal). Started from per-response complete-case OLS, not from the factorised MLE.
    """
    n, p = W.shape
    k = responses.shape[1]
    # optimise on standardised responses (well-scaled for BFGS), then scale B back
    unit = np.nanstd(np.where(observed, responses, np.nan), axis=0)
    responses = responses / unit
    n_obs = observed.sum(axis=1)
    tril = np.tril_indices(k)
    b0 = np.column_stack(
        [
            np.linalg.lstsq(W[observed[:, j]], responses[observed[:, j], j], rcond=None)[0]
            for j in range(k)
        ]
    )
    scale = np.nanstd(np.where(observed, responses, np.nan), axis=0)
    l0 = np.diag(np.log(scale))[tril]
    theta0 = np.r_[b0.ravel(), l0]

    def unpack(theta):
        B = theta[: p * k].reshape(p, k)
        L = np.zeros((k, k))
        L[tril] = theta[p * k :]
        L[np.diag_indices(k)] = np.exp(np.diag(L))
        return B, L @ L.T

    def negloglik(theta):
        B, S = unpack(theta)
        resid = responses - W @ B
        total = 0.0
        for m in range(1, k + 1):
            rows = n_obs == m
            if not rows.any():
                continue
            Sm = S[:m, :m]
            e = resid[rows, :m]
            _, logdet = np.linalg.slogdet(Sm)
            quad = np.einsum("ni,ij,nj->n", e, np.linalg.inv(Sm), e)
            total += 0.5 * (rows.sum() * (logdet + m * np.log(2 * np.pi)) + quad.sum())
        return total

    theta = theta0
    for _ in range(6):  # restarts refresh BFGS's Hessian approximation for a tight optimum
        theta = optimize.minimize(negloglik, theta, method="BFGS", options={"gtol": 1e-10}).x
    B, _ = unpack(theta)
    return B * unit


@pytest.mark.parametrize("degree", [0, 1])
def test_mar_equals_direct_likelihood_maximisation(degree):
    # Oracle: Little & Rubin (2002) §7.4 - the factorised MLE is the MLE of the joint normal
    # model; here the joint likelihood is maximised numerically (BFGS) without factorising.
    data = _simulate(MAR, 3, seed=11)
    est = missing.mar_all_visits(data, "psp", attendance_degree=degree, small_sample=False)
    W = ancova_arrays(data, "psp", rows="baseline").X
    fraction = data.sessions_attended / np.maximum(data.sessions_offered, 1)
    for r in range(3):
        y = data.outcomes["psp"][r, :, 1:]
        obs = data.observed[r, :, 1:]
        if degree:
            y = np.column_stack([fraction[r], y])
            obs = np.column_stack([np.ones(len(y), bool), obs])
        B = _direct_mle(W[r], np.where(obs, y, 0.0), obs)
        assert est.estimate[r] == pytest.approx(B[1, -1], abs=1e-5)


def test_no_missing_data_mar_equals_complete_case():
    data = _simulate([*CLEAN, "dropout.completion_target=1"], 4, seed=3)
    cc = missing.complete_case(data, "psp")
    mar = missing.mar_all_visits(data, "psp")
    np.testing.assert_allclose(mar.estimate, cc.estimate, rtol=0, atol=1e-9)


def test_mar_unbiased_complete_case_biased(mar_data):
    # truth: ITT at the final visit = effect * E[attended fraction | treated] = 7 * 0.6
    # (linear dose-response; mean_fraction 0.6 is met exactly by the simulator's calibration)
    truth = 7.0 * 0.6
    cc = missing.complete_case(mar_data, "psp")
    mar = missing.mar_all_visits(mar_data, "psp")
    for est in (cc, mar):
        assert not est.failed.any()
    mcse = lambda e: e.estimate.std(ddof=1) / np.sqrt(len(e))  # noqa: E731
    # measured (seed 20240601, 512 reps): complete case +0.64 +- 0.08; MAR -0.02 +- 0.08
    assert cc.estimate.mean() - truth > 5 * mcse(cc)
    assert abs(mar.estimate.mean() - truth) < 3 * mcse(mar)


def test_tipping_point(mar_data):
    data = mar_data.take(np.arange(20))
    mar = missing.mar_all_visits(data, "psp")
    tp = missing.tipping_point(data, "psp", deltas=[0.0, 2.0, 5.0])
    # delta = 0 reproduces MAR exactly
    np.testing.assert_array_equal(tp.by_delta[0].estimate, mar.estimate)
    np.testing.assert_array_equal(tp.by_delta[0].ci_low, mar.ci_low)
    # the estimate is that of single conditional-mean imputation (shifted by delta) + ANCOVA
    delta = 5.0
    a = ancova_arrays(data, "psp", rows="baseline")
    for r in range(3):
        W = a.X[r]
        y = data.outcomes["psp"][r]
        obs = data.observed[r]
        y1, y2 = y[:, 1].copy(), y[:, 2].copy()
        f = data.sessions_attended[r] / np.maximum(data.sessions_offered[r], 1)
        X1 = np.column_stack([W, f])
        c1 = np.linalg.lstsq(X1[obs[:, 1]], y1[obs[:, 1]], rcond=None)[0]
        y1[~obs[:, 1]] = X1[~obs[:, 1]] @ c1
        X2 = np.column_stack([W, f, y1])
        c2 = np.linalg.lstsq(X2[obs[:, 2]], y2[obs[:, 2]], rcond=None)[0]
        y2[~obs[:, 2]] = X2[~obs[:, 2]] @ c2
        y2[~obs[:, 2] & data.treated[r]] -= delta
        beta = np.linalg.lstsq(W, y2, rcond=None)[0]
        assert tp.by_delta[2].estimate[r] == pytest.approx(beta[1], abs=1e-9)
    # at the tipping delta the lower confidence limit is 0
    at_tip = missing.delta_adjusted(data, "psp", delta=float(tp.tipping_delta[0]))
    assert at_tip.ci_low[0] == pytest.approx(0.0, abs=1e-9)
    frame = tp.to_frame()
    assert len(frame) == 3 * 20 and {"delta", "tipping_delta"} <= set(frame.columns)


def test_mar_without_attendance_columns_is_mar_given_the_other_terms():
    """A trial without attendance records (BtheB): the monotone-factorisation MAR estimate
    drops the attendance terms (MAR given baseline, covariates and earlier visits) instead of
    failing with NaN."""
    from pathlib import Path

    from trialsim.io import read_trial_data
    from trialsim.io.declare import Declarations

    real = Path(__file__).parent / "data" / "real"
    declared = Declarations.from_options(covariate=("drug", "length"))
    data = read_trial_data(real / "btheb.csv", declared=declared)
    est = missing.mar_all_visits(data, "bdi")
    assert est.analysis == "mar-all-visits" and not est.failed[0]
    direct = missing.mar_all_visits(data, "bdi", attendance_degree=0)
    assert est.estimate[0] == direct.estimate[0] and est.se[0] == direct.se[0]
