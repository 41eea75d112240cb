"""Exact fast posterior of the Gaussian random-intercept model.

Oracles: (1) the conjugate result for tau = 0 (Student-t posterior of an OLS coefficient under
flat priors and p(sigma) ∝ 1/sigma; Gelman et al. 2013, BDA §14.2) with statsmodels OLS;
(2) an independent dense-matrix computation of the posterior on a fine (tau, sigma) grid;
(3) NUTS on the same model and priors (PyMC + nutpie), within its Monte Carlo error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from trialsim.analyse.prepare import ancova_arrays
from trialsim.bayes.fast import ScalePrior, fast_posterior
from trialsim.bayes.priors import EffectPrior, resolve_prior
from trialsim.scenario import load_scenario
from trialsim.simulate.trial import simulate_trials

FLAT = EffectPrior("flat", 0.0, math.inf)


@pytest.fixture(scope="module")
def sft_arrays():
    s = load_scenario("scenarios/sft-19m.toml").with_outcomes(["psp"])
    return ancova_arrays(simulate_trials(s, 40, seed=7), "psp")


def _small_problem(seed=3, n_groups=6, size=4, n_control=20):
    rng = np.random.default_rng(seed)
    n_treated = n_groups * size
    n = n_treated + n_control
    treat = np.r_[np.ones(n_treated), np.zeros(n_control)]
    group = np.r_[np.repeat(np.arange(n_groups), size), -np.ones(n_control, int)]
    x = rng.normal(size=n)
    u = rng.normal(0, 1.5, n_groups)
    y = 1.0 + 2.0 * treat + 0.5 * x + np.where(group >= 0, u[np.maximum(group, 0)], 0)
    y = y + rng.normal(0, 2.0, n)
    X = np.column_stack([np.ones(n), treat, x])
    return y, X, group


def test_tau_zero_limit_is_the_student_t_of_ols(sft_arrays):
    """A group-SD prior squeezed to zero gives the conjugate OLS posterior exactly."""
    a = sft_arrays
    post = fast_posterior(
        a.y, a.X, a.group, a.mask, prior=FLAT, group_prior=ScalePrior("half-normal", 1e-9)
    )
    for r in range(3):
        keep = a.mask[r]
        ols = sm.OLS(a.y[r, keep], a.X[r, keep]).fit()
        t = stats.t(ols.df_resid, loc=ols.params[1], scale=ols.bse[1])
        assert post.mean[r] == pytest.approx(ols.params[1], abs=1e-8)
        assert post.sd[r] == pytest.approx(t.std(), rel=1e-6)
        for c in (0.0, 3.0, 7.0):
            assert post.prob_greater(c)[r] == pytest.approx(t.sf(c), abs=1e-7)
        assert post.quantile(0.975)[r] == pytest.approx(t.ppf(0.975), abs=1e-6)


def _dense_posterior(y, X, group, group_prior, prior):
    """Independent computation: dense V, a fine 2-D grid in (tau, log sigma), effect column 1.

    For each grid point: log p(y | tau, sigma) with the flat coefficients integrated out
    (|V|, |X'V^-1 X|, GLS residual), times the priors; the effect given (tau, sigma) is normal.
    The normal effect prior is handled by appending it as a pseudo-observation.
    """
    n, p = X.shape
    Z = (group[:, None] == np.arange(group.max() + 1)).astype(float)
    taus = np.linspace(1e-6, 8.0, 160)
    sigmas = np.exp(np.linspace(np.log(0.8), np.log(5.0), 120))
    dt, ds = taus[1] - taus[0], np.log(sigmas[1] / sigmas[0])
    logw, means, variances = [], [], []
    for tau in taus:  # all sigmas at once: V is (K, n, n)
        V = sigmas[:, None, None] ** 2 * np.eye(n) + tau**2 * (Z @ Z.T)
        Vi = np.linalg.inv(V)
        M = X.T @ Vi @ X
        Mi = np.linalg.inv(M)
        b = np.einsum("kij,kj->ki", Mi, X.T @ Vi @ y)
        r = y - b @ X.T
        ll = -0.5 * (
            np.linalg.slogdet(V)[1] + np.linalg.slogdet(M)[1] + np.einsum("ki,kij,kj->k", r, Vi, r)
        )
        c = Mi[:, 1, 1]
        if prior.flat:
            m_post, v_post = b[:, 1], c
        else:  # normal prior on the effect: marginal factor and conjugate update
            ll = ll + stats.norm.logpdf(b[:, 1], prior.mean, np.sqrt(c + prior.sd**2))
            v_post = 1.0 / (1.0 / c + 1.0 / prior.sd**2)
            m_post = v_post * (b[:, 1] / c + prior.mean / prior.sd**2)
        # p(sigma) ∝ 1/sigma: flat in log sigma; trapezoid rule in tau (half weight at the ends)
        end = math.log(0.5) if tau in (taus[0], taus[-1]) else 0.0
        logw.append(ll + float(group_prior.logpdf(tau)) + end)
        means.append(m_post)
        variances.append(v_post)
    logw, means, variances = (np.concatenate(v) for v in (logw, means, variances))
    logw = logw + math.log(dt * ds)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    mean = (w * means).sum()
    sd = math.sqrt((w * (variances + means**2)).sum() - mean**2)
    p_gt0 = (w * stats.norm.sf(0.0, means, np.sqrt(variances))).sum()
    return mean, sd, p_gt0


@pytest.mark.parametrize("prior", [FLAT, EffectPrior("normal", 0.5, 1.0)])
def test_matches_dense_grid_computation(prior):
    y, X, group = _small_problem()
    gp = ScalePrior("half-normal", 2.0)
    post = fast_posterior(y[None], X[None], group[None], prior=prior, group_prior=gp)
    mean, sd, p_gt0 = _dense_posterior(y, X, group, gp, prior)
    # the dense 2-D grid has its own discretisation error, ~1e-4 relative
    assert post.mean[0] == pytest.approx(mean, abs=2e-3 * sd)
    assert post.sd[0] == pytest.approx(sd, rel=2e-3)
    assert post.prob_greater(0.0)[0] == pytest.approx(p_gt0, abs=5e-4)


def test_quadrature_has_converged(sft_arrays):
    a = sft_arrays
    kw = dict(prior=resolve_prior("sceptical", mcid=7.0), group_prior=ScalePrior("half-t", 5.0))
    base = fast_posterior(a.y, a.X, a.group, a.mask, **kw)
    fine = fast_posterior(a.y, a.X, a.group, a.mask, n_ratio=400, n_sigma=40, **kw)
    assert np.abs(base.mean - fine.mean).max() < 1e-4 * np.median(base.sd)
    assert np.abs(base.sd / fine.sd - 1).max() < 1e-4
    assert np.abs(base.prob_greater(7.0) - fine.prob_greater(7.0)).max() < 1e-5


def test_batched_equals_one_at_a_time_and_failures_are_kept(sft_arrays):
    a = sft_arrays
    kw = dict(prior=FLAT, group_prior=ScalePrior("half-normal", 6.5))
    batch = fast_posterior(a.y[:5], a.X[:5], a.group[:5], a.mask[:5], **kw)
    one = fast_posterior(a.y[3:4], a.X[3:4], a.group[3:4], a.mask[3:4], **kw)
    assert batch.mean[3] == pytest.approx(one.mean[0], rel=1e-12)
    mask = a.mask[:2].copy()
    mask[1] = False  # a replicate with no data
    post = fast_posterior(a.y[:2], a.X[:2], a.group[:2], mask, **kw)
    assert post.failed.tolist() == [False, True]
    assert np.isfinite(post.mean[0]) and np.isnan(post.mean[1])


def test_cluster_model_tau_zero_limit():
    """Cluster-randomised data: the same engine with the cluster as the random effect."""
    s = load_scenario(
        "scenarios/sft-19m.toml", ["design.randomisation=municipality"]
    ).with_outcomes(["psp"])
    a = ancova_arrays(simulate_trials(s, 3, seed=1), "psp")
    post = fast_posterior(
        a.y, a.X, a.cluster, a.mask, prior=FLAT, group_prior=ScalePrior("half-normal", 1e-9)
    )
    keep = a.mask[0]
    ols = sm.OLS(a.y[0, keep], a.X[0, keep]).fit()
    assert post.mean[0] == pytest.approx(ols.params[1], abs=1e-8)
    wide = fast_posterior(
        a.y, a.X, a.cluster, a.mask, prior=FLAT, group_prior=ScalePrior("half-normal", 6.5)
    )
    # with 9 clusters the cluster SD is uncertain: the posterior is wider than OLS's
    assert (wide.sd > post.sd).all()


# ---- agreement with NUTS --------------------------------------------------------------------


def _nuts_vs_fast(a, reps, *, draws, chains, prior):
    import arviz as az

    from trialsim.bayes.models import model_input
    from trialsim.bayes.sampling import sample_model

    gp = ScalePrior("half-normal", 6.5)
    post = fast_posterior(a.y, a.X, a.group, a.mask, prior=prior, group_prior=gp)
    rows = []
    for r in reps:
        run = sample_model(
            model_input(a, r),
            prior=prior,
            group_prior=gp,
            draws=draws,
            tune=800,
            chains=chains,
            seed=100 + r,
        )
        e = run.idata.posterior["effect"].values.ravel()
        ess = float(az.ess(run.idata, var_names=["effect"])["effect"])
        rows.append(
            (
                r,
                e.mean(),
                e.std(),
                (e > 0).mean(),
                ess,
                post.mean[r],
                post.sd[r],
                post.prob_greater(0.0)[r],
            )
        )
    return rows


def _check_rows(rows):
    for r, m_n, sd_n, p_n, ess, m_f, sd_f, p_f in rows:
        # Monte Carlo error of NUTS: SE(mean) = sd / sqrt(ESS); SE(P) = sqrt(p(1-p)/ESS)
        assert abs(m_n - m_f) <= max(0.1 * sd_f, 4 * sd_f / math.sqrt(ess)), (r, m_n, m_f)
        assert abs(p_n - p_f) <= max(0.02, 4 * math.sqrt(p_f * (1 - p_f) / ess)), (r, p_n, p_f)
        assert abs(sd_n / sd_f - 1) < 0.1


def test_fast_posterior_agrees_with_nuts_few_datasets(sft_arrays):
    rows = _nuts_vs_fast(
        sft_arrays, [0, 1], draws=1500, chains=2, prior=resolve_prior("sceptical", mcid=7.0)
    )
    _check_rows(rows)


@pytest.mark.slow
def test_fast_posterior_agrees_with_nuts_24_datasets(sft_arrays):
    """The acceptance check of issue 4: >= 20 datasets, mean within 0.1 posterior SD and
    P(effect > 0) within 0.02 (NUTS with 4 chains x 5000 draws: MCSE of P <= 0.008)."""
    rows = _nuts_vs_fast(
        sft_arrays, range(24), draws=5000, chains=4, prior=resolve_prior("sceptical", mcid=7.0)
    )
    for r, m_n, _sd_n, p_n, _ess, m_f, sd_f, p_f in rows:
        assert abs(m_n - m_f) <= 0.1 * sd_f, (r, m_n, m_f, sd_f)
        assert abs(p_n - p_f) <= 0.02, (r, p_n, p_f)
