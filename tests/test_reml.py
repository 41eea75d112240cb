"""Oracles for the batched REML engine (trialsim.analyse.reml).

References used as oracles:
* statsmodels ``MixedLM`` (REML=True) on the same datasets: fixed effects, and the REML
  log-likelihood compared through one independent dense numpy implementation of
  ``-0.5 [log|V| + log|X'V^-1 X| + r'V^-1 r + (n - p) log 2 pi]`` (Harville 1977, JASA 72:320).
* Satterthwaite df: the lmerTest recipe (Kuznetsova et al. 2017, J Stat Softw 82(13), §3)
  redone densely with finite differences in the (theta, sigma) parameterisation; and the
  balanced cluster-randomised trial with a cluster-level treatment, where the exact df is the
  number of clusters - 2 (e.g. Kenward & Roger 1997, Biometrics 53:983, balanced designs).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

from trialsim.analyse.ols import fit_ols
from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.reml import (
    BLOCK_REPS,
    cluster_stats,
    fit_reml,
    fit_reml_masked,
    fit_reml_stats,
)
from trialsim.scenario import load_scenario
from trialsim.simulate import simulate_trials

from .conftest import SFT

# --------------------------------------------------------------------------- data


def partially_nested(rng, n_rep, *, icc=0.08, effect=0.3, missing=0.0, singleton=False):
    """9 strata, 27 treatment groups of 6, 171 controls (cluster -1): the SFT shape."""
    n_strata, groups_per_stratum, group_size, controls_per_stratum = 9, 3, 6, 19
    n_groups = n_strata * groups_per_stratum
    n_ctrl = n_strata * controls_per_stratum
    n = n_groups * group_size + n_ctrl
    stratum = np.concatenate(
        [
            np.repeat(np.arange(n_strata), groups_per_stratum * group_size),
            np.repeat(np.arange(n_strata), controls_per_stratum),
        ]
    )
    group = np.concatenate([np.repeat(np.arange(n_groups), group_size), -np.ones(n_ctrl, int)])
    treat = (group >= 0).astype(float)
    X = np.zeros((n_rep, n, 3 + n_strata - 1))
    X[..., 0] = 1.0
    X[..., 1] = treat
    baseline = rng.normal(size=(n_rep, n))
    X[..., 2] = baseline
    for s in range(1, n_strata):
        X[..., 2 + s] = stratum == s
    u = rng.normal(scale=np.sqrt(icc / (1 - icc)), size=(n_rep, n_groups))
    y = effect * treat + 0.5 * baseline + 0.1 * stratum + rng.normal(size=(n_rep, n))
    y += np.where(group >= 0, u[:, np.maximum(group, 0)], 0.0)
    if missing:
        y[rng.random((n_rep, n)) < missing] = np.nan
    cluster = np.broadcast_to(group, (n_rep, n)).copy()
    if singleton:
        cluster[:, group < 0] = n_groups + np.arange(n_ctrl)
    return y, X, cluster


def cluster_randomised(rng, n_rep, *, n_clusters=12, size=10, icc=0.1, missing=0.0):
    """Two-arm cluster-randomised trial, treatment at cluster level, every row clustered."""
    cluster = np.repeat(np.arange(n_clusters), size)
    treat = (cluster % 2).astype(float)
    n = cluster.size
    X = np.zeros((n_rep, n, 3))
    X[..., 0] = 1.0
    X[..., 1] = treat
    X[..., 2] = rng.normal(size=(n_rep, n))
    u = rng.normal(scale=np.sqrt(icc / (1 - icc)), size=(n_rep, n_clusters))
    y = 0.3 * treat + 0.4 * X[..., 2] + u[:, cluster] + rng.normal(size=(n_rep, n))
    if missing:
        y[rng.random((n_rep, n)) < missing] = np.nan
    return y, X, np.broadcast_to(cluster, (n_rep, n)).copy()


# --------------------------------------------------------------------------- dense oracles


def _dense_parts(y, X, cluster, sigma2_cluster, sigma2):
    keep = np.isfinite(y)
    y, X, cluster = y[keep], X[keep], cluster[keep]
    ids = np.unique(cluster[cluster >= 0])
    Z = (cluster[:, None] == ids[None, :]).astype(float)
    V = sigma2 * np.eye(len(y)) + sigma2_cluster * Z @ Z.T
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    C = np.linalg.inv(XtViX)
    beta = C @ X.T @ Vi @ y
    r = y - X @ beta
    return V, Vi, XtViX, C, beta, r, Z


def dense_reml_loglik(y, X, cluster, sigma2_cluster, sigma2):
    """REML log-likelihood, written plainly with dense matrices (independent oracle)."""
    V, Vi, XtViX, _, _, r, _ = _dense_parts(y, X, cluster, sigma2_cluster, sigma2)
    n, p = len(r), X.shape[1]
    return -0.5 * (
        np.linalg.slogdet(V)[1]
        + np.linalg.slogdet(XtViX)[1]
        + r @ Vi @ r
        + (n - p) * np.log(2 * np.pi)
    )


def dense_gls_se(y, X, cluster, sigma2_cluster, sigma2, coef=1):
    C = _dense_parts(y, X, cluster, sigma2_cluster, sigma2)[3]
    return np.sqrt(C[coef, coef])


def dense_satterthwaite_df(y, X, cluster, sigma2_cluster, sigma2, coef=1):
    """lmerTest's recipe with numerical derivatives in (theta, sigma), theta = sd ratio."""

    def deviance(par):
        theta, sigma = par
        return -2.0 * dense_reml_loglik(y, X, cluster, theta**2 * sigma**2, sigma**2)

    def contrast_var(par):
        theta, sigma = par
        return _dense_parts(y, X, cluster, theta**2 * sigma**2, sigma**2)[3][coef, coef]

    x0 = np.array([np.sqrt(sigma2_cluster / sigma2), np.sqrt(sigma2)])
    h = 1e-4 * x0
    H = np.empty((2, 2))
    g = np.empty(2)
    for i in range(2):
        ei = np.eye(2)[i] * h[i]
        g[i] = (contrast_var(x0 + ei) - contrast_var(x0 - ei)) / (2 * h[i])
        for j in range(2):
            ej = np.eye(2)[j] * h[j]
            H[i, j] = (
                deviance(x0 + ei + ej)
                - deviance(x0 + ei - ej)
                - deviance(x0 - ei + ej)
                + deviance(x0 - ei - ej)
            ) / (4 * h[i] * h[j])
    cov_varpar = 2.0 * np.linalg.inv(H)
    return 2.0 * contrast_var(x0) ** 2 / (g @ cov_varpar @ g)


def statsmodels_fit(y, X, cluster, exog_re_col=None):
    """statsmodels MixedLM REML; rows with cluster -1 get Z = 0 (exog_re = treat column).

    BFGS with gtol=1e-10: statsmodels' default tolerance stops ~1e-6 short in the variance
    parameters, which moves the SE in the 6th digit."""
    keep = np.isfinite(y)
    yk, Xk, ck = y[keep], X[keep], cluster[keep]
    groups = np.where(ck >= 0, ck, ck.max() + 1)
    exog_re = Xk[:, [exog_re_col]] if exog_re_col is not None else np.ones((len(yk), 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sm.MixedLM(yk, Xk, groups=groups, exog_re=exog_re)
        try:
            return model.fit(reml=True, method="bfgs", gtol=1e-10)
        except np.linalg.LinAlgError:
            return model.fit(reml=True)


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def nested_fits():
    rng = np.random.default_rng(20240611)
    y, X, cluster = partially_nested(rng, 24, missing=0.05)
    fit = fit_reml(y, X, cluster)
    sm_fits = [statsmodels_fit(y[r], X[r], cluster[r], exog_re_col=1) for r in range(len(y))]
    return y, X, cluster, fit, sm_fits


def test_reml_loglik_equals_dense_criterion(nested_fits):
    y, X, cluster, fit, _ = nested_fits
    for r in range(len(y)):
        dense = dense_reml_loglik(
            y[r], X[r], cluster[r], fit.sigma2_cluster[r], fit.sigma2_residual[r]
        )
        assert fit.reml_loglik[r] == pytest.approx(dense, abs=1e-8)


def test_reml_against_statsmodels_mixedlm(nested_fits):
    """statsmodels MixedLM (REML) with exog_re = treat, i.e. lme4 (0 + treat | group).

    Where statsmodels reached the optimum (its dense REML criterion equal to ours to 1e-6)
    and away from the boundary, effect and SE agree to 1e-5. SE is the lme4/lmerTest one,
    sqrt(sigma2 (X'V^-1 X)^-1), evaluated densely at statsmodels' variance estimates
    (statsmodels' own bse_fe comes from its joint Hessian including the fixed/variance
    cross-terms, which lme4 does not use). Everywhere, including boundary fits and fits where
    statsmodels stops early, our REML criterion is >= statsmodels' (minus 1e-8).
    """
    y, X, cluster, fit, sm_fits = nested_fits
    est = fit.estimates
    agreeing = 0
    for r, res in enumerate(sm_fits):
        s2 = res.scale
        s2c = float(np.asarray(res.cov_re)[0, 0])
        ours = dense_reml_loglik(
            y[r], X[r], cluster[r], fit.sigma2_cluster[r], fit.sigma2_residual[r]
        )
        theirs = dense_reml_loglik(y[r], X[r], cluster[r], s2c, s2)
        assert ours >= theirs - 1e-8
        assert res.llf == pytest.approx(theirs, abs=1e-6)  # same criterion as statsmodels'
        if res.converged and not est.boundary[r] and abs(ours - theirs) < 1e-6:
            agreeing += 1
            assert abs(est.estimate[r] - res.fe_params[1]) < 1e-5
            sm_se = dense_gls_se(y[r], X[r], cluster[r], s2c, s2)
            assert abs(est.se[r] - sm_se) < 1e-5
    assert agreeing >= 12  # the comparison is not vacuous
    assert est.converged.all() and not est.failed.any()


def test_boundary_fit_is_the_fixed_effects_model():
    """sigma2_cluster = 0: estimate and SE equal OLS and df = n - p (lmerTest's limit)."""
    rng = np.random.default_rng(7)
    y, X, cluster = partially_nested(rng, 40, icc=0.0)
    fit = fit_reml(y, X, cluster)
    est = fit.estimates
    assert est.boundary.sum() >= 10
    ols = fit_ols(y, X)
    b = est.boundary
    np.testing.assert_allclose(est.estimate[b], ols.estimate[b], rtol=0, atol=1e-12)
    np.testing.assert_allclose(est.se[b], ols.se[b], rtol=1e-10)
    np.testing.assert_array_equal(est.df[b], ols.df[b])
    assert (fit.sigma2_cluster[b] == 0).all() and est.converged.all()
    # at the boundary the slope of the profiled criterion points inwards: no better lam > 0
    for r in np.flatnonzero(b)[:5]:
        base = dense_reml_loglik(y[r], X[r], cluster[r], 0.0, fit.sigma2_residual[r])
        for s2c in (1e-4, 1e-2):
            assert dense_reml_loglik(y[r], X[r], cluster[r], s2c, fit.sigma2_residual[r]) < base


def test_cluster_randomised_with_missing_rows_against_statsmodels():
    rng = np.random.default_rng(11)
    y, X, cluster = cluster_randomised(rng, 20, icc=0.15, missing=0.1)
    fit = fit_reml(y, X, cluster)
    est = fit.estimates
    agreeing = 0
    for r in range(len(y)):
        res = statsmodels_fit(y[r], X[r], cluster[r])
        s2, s2c = res.scale, float(np.asarray(res.cov_re)[0, 0])
        ours = dense_reml_loglik(
            y[r], X[r], cluster[r], fit.sigma2_cluster[r], fit.sigma2_residual[r]
        )
        theirs = dense_reml_loglik(y[r], X[r], cluster[r], s2c, s2)
        assert ours >= theirs - 1e-8
        if res.converged and not est.boundary[r] and abs(ours - theirs) < 1e-6:
            agreeing += 1
            assert abs(est.estimate[r] - res.fe_params[1]) < 1e-5
            assert abs(est.se[r] - dense_gls_se(y[r], X[r], cluster[r], s2c, s2)) < 1e-5
    assert agreeing >= 8
    assert (fit.stats.n_obs < y.shape[1]).all()  # rows really were dropped


def test_singleton_variant_against_statsmodels():
    """Each control its own cluster: lme4 ``(1 | group)`` with singleton control groups."""
    rng = np.random.default_rng(5)
    y, X, cluster = partially_nested(rng, 6, singleton=True)
    fit = fit_reml(y, X, cluster)
    for r in range(len(y)):
        res = statsmodels_fit(y[r], X[r], cluster[r])
        s2, s2c = res.scale, float(np.asarray(res.cov_re)[0, 0])
        ours = dense_reml_loglik(
            y[r], X[r], cluster[r], fit.sigma2_cluster[r], fit.sigma2_residual[r]
        )
        assert ours >= dense_reml_loglik(y[r], X[r], cluster[r], s2c, s2) - 1e-8
        assert fit.reml_loglik[r] == pytest.approx(ours, abs=1e-8)


def test_satterthwaite_df_against_dense_numerical_recipe(nested_fits):
    y, X, cluster, fit, _ = nested_fits
    est = fit.estimates
    interior = np.flatnonzero(~est.boundary)[:8]
    assert interior.size >= 5
    for r in interior:
        df = dense_satterthwaite_df(
            y[r], X[r], cluster[r], fit.sigma2_cluster[r], fit.sigma2_residual[r]
        )
        assert est.df[r] == pytest.approx(df, rel=1e-3)


def test_satterthwaite_df_balanced_cluster_randomised_is_clusters_minus_two():
    rng = np.random.default_rng(3)
    n_clusters, size = 10, 8
    cluster = np.repeat(np.arange(n_clusters), size)
    treat = (cluster % 2).astype(float)
    X = np.stack([np.ones_like(treat), treat], axis=1)
    u = rng.normal(scale=0.7, size=(30, n_clusters))
    y = 0.2 * treat + u[:, cluster] + rng.normal(size=(30, cluster.size))
    est = fit_reml(y, X, cluster).estimates
    interior = ~est.boundary
    assert interior.sum() >= 25
    np.testing.assert_allclose(est.df[interior], n_clusters - 2, rtol=1e-7)


def test_batched_equals_one_at_a_time_and_is_deterministic():
    rng = np.random.default_rng(9)
    y, X, cluster = partially_nested(rng, 12, missing=0.1)
    batch = fit_reml(y, X, cluster).estimates
    again = fit_reml(y, X, cluster).estimates
    np.testing.assert_array_equal(batch.estimate, again.estimate)
    for r in range(len(y)):
        one = fit_reml(y[r : r + 1], X[r : r + 1], cluster[r : r + 1]).estimates
        for name in ("estimate", "se", "df", "p_value"):
            np.testing.assert_allclose(
                getattr(one, name), getattr(batch, name)[r : r + 1], rtol=1e-9, atol=1e-12
            )
        assert one.boundary[0] == batch.boundary[r]


def test_shared_design_and_mask_argument():
    rng = np.random.default_rng(13)
    y, X, cluster = partially_nested(rng, 4)
    mask = rng.random(y.shape) > 0.2
    a = fit_reml(np.where(mask, y, np.nan), X[0], cluster, analysis="pn").estimates
    b = fit_reml(y, np.broadcast_to(X[0], X.shape), cluster, mask).estimates
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-12)
    assert a.analysis == "pn"


def test_failed_replicates_do_not_raise_or_leak():
    rng = np.random.default_rng(17)
    y, X, cluster = partially_nested(rng, 5)
    X = X.copy()
    X[2, :, 1] = 0.0  # nobody treated: the effect is not estimable
    y[4, :] = np.nan  # nothing observed
    fit = fit_reml(y, X, cluster)
    est = fit.estimates
    np.testing.assert_array_equal(est.failed, [False, False, True, False, True])
    assert np.isnan(est.estimate[[2, 4]]).all() and np.isnan(est.df[[2, 4]]).all()
    good = fit_reml(y[[0, 1, 3]], X[[0, 1, 3]], cluster[[0, 1, 3]]).estimates
    np.testing.assert_allclose(est.estimate[[0, 1, 3]], good.estimate, rtol=1e-10)


def test_an_empty_stratum_is_dropped_as_lme4_drops_it():
    """A stratum column that is zero in every used row is aliased: the fit equals the fit
    without the column (lme4 drops it: "fixed-effect model matrix is rank deficient so
    dropping 1 column"), with NaN (R's NA) for its coefficient."""
    rng = np.random.default_rng(17)
    y, X, cluster = partially_nested(rng, 3)
    X = X.copy()
    X[1, :, 3] = 0.0
    fit = fit_reml(y, X, cluster)
    assert not fit.estimates.failed.any() and np.isnan(fit.beta[1, 3])
    reduced = fit_reml(y[1:2], np.delete(X[1:2], 3, axis=-1), cluster[1:2])
    for f in ("estimate", "se", "df"):
        assert getattr(fit.estimates, f)[1] == pytest.approx(
            getattr(reduced.estimates, f)[0], rel=1e-9
        )
    assert fit.reml_loglik[1] == pytest.approx(reduced.reml_loglik[0], rel=1e-10)


def test_stats_reuse_and_no_clusters():
    rng = np.random.default_rng(19)
    y, X, cluster = partially_nested(rng, 3)
    stats = cluster_stats(y, X, cluster)
    assert stats.n_clusters.tolist() == [27, 27, 27]
    fit = fit_reml_stats(stats, coef=2)
    assert np.allclose(fit.estimates.estimate, fit.beta[:, 2])
    # no clustered row at all: the fixed-effects model, flagged as boundary
    none = fit_reml(y, X, -np.ones_like(cluster)).estimates
    assert none.boundary.all()
    np.testing.assert_allclose(none.se, fit_ols(y, X).se, rtol=1e-10)


# --------------------------------------------------------------------------- blocks and threads


def test_blocks_and_threads_do_not_change_the_fit():
    """Batches are fitted in blocks of BLOCK_REPS replicates on several threads: the result is
    the same bit for bit whatever the thread count, and every block boundary is invisible
    (each replicate fitted alone agrees to rounding)."""
    rng = np.random.default_rng(23)
    n_rep = 2 * BLOCK_REPS + 37
    y, X, cluster = cluster_randomised(rng, n_rep, n_clusters=8, size=6, missing=0.1)
    one = fit_reml(y, X, cluster, threads=1)
    two = fit_reml(y, X, cluster, threads=2)
    for name in ("estimate", "se", "df", "p_value", "boundary", "converged"):
        np.testing.assert_array_equal(getattr(one.estimates, name), getattr(two.estimates, name))
    np.testing.assert_array_equal(one.reml_loglik, two.reml_loglik)
    for r in (0, BLOCK_REPS - 1, BLOCK_REPS, n_rep - 1):
        alone = fit_reml(y[r : r + 1], X[r : r + 1], cluster[r : r + 1]).estimates
        np.testing.assert_allclose(alone.estimate, one.estimates.estimate[r], rtol=1e-9)
        np.testing.assert_allclose(alone.df, one.estimates.df[r], rtol=1e-9)
    # the statistics of the whole batch (blocks merged) give the same fit
    stats = cluster_stats(y, X, cluster, threads=2)
    again = fit_reml_stats(stats, threads=1).estimates
    np.testing.assert_array_equal(again.estimate, one.estimates.estimate)
    assert stats.cross_size.shape[:2] == (n_rep, stats.sizes.size)


def test_cluster_stats_against_a_plain_loop():
    """Pooled cluster cross-products ``sum_c z_c z_c'`` per cluster size, against a loop over
    replicates and clusters, for grouped, singleton and cluster-randomised layouts."""
    rng = np.random.default_rng(29)
    cases = [
        partially_nested(rng, 5, missing=0.3),
        partially_nested(rng, 5, missing=0.2, singleton=True),
        cluster_randomised(rng, 5, missing=0.2),
    ]
    for y, X, cluster in cases:
        stats = cluster_stats(y, X, cluster)
        for r in range(len(y)):
            keep = np.isfinite(y[r])
            W = np.column_stack([X[r], y[r]])[keep]
            np.testing.assert_allclose(stats.cross[r], W.T @ W, rtol=1e-12)
            expected = np.zeros_like(stats.cross_size[r])
            n_size = np.zeros(stats.sizes.size)
            for c in np.unique(cluster[r][keep & (cluster[r] >= 0)]):
                rows = W[cluster[r][keep] == c]
                size = np.searchsorted(stats.sizes, len(rows))
                expected[size] += np.outer(rows.sum(axis=0), rows.sum(axis=0))
                n_size[size] += 1
            np.testing.assert_allclose(stats.cross_size[r], expected, rtol=1e-12, atol=1e-9)
            np.testing.assert_array_equal(stats.n_size[r], n_size)
            counts = np.bincount(cluster[r][keep & (cluster[r] >= 0)])
            assert stats.n_clusters[r] == (counts > 0).sum()


@pytest.fixture(scope="module")
def sft_small():
    """Small simulated SFT batches: individual (municipality strata) and stepped wedge."""
    designs = ("individual", "stepped-wedge")
    return [
        simulate_trials(load_scenario(SFT, [f"design.randomisation={d}"]), 20, seed=1)
        for d in designs
    ]


def test_ancova_arrays_match_a_plain_construction(sft_small):
    """The design arrays built in one pass equal a column-by-column construction."""
    for data in sft_small:
        a = ancova_arrays(data, "psp")
        y, base = data.outcomes["psp"][:, :, -1], data.outcomes["psp"][:, :, 0]
        mask = np.isfinite(y) & np.isfinite(base)
        cols = [np.ones_like(y), data.treated.astype(float), base - np.nanmean(base)]
        if data.structure.stratified:  # randomised within municipalities: strata
            m = data.site.max() + 1
            cols += [np.broadcast_to(data.site == j, y.shape) for j in range(1, m)]
        cols += [
            np.broadcast_to(data.period == j, y.shape) for j in range(1, data.period.max() + 1)
        ]
        expected = np.where(mask[..., None], np.stack(cols, axis=-1), 0.0)
        np.testing.assert_array_equal(a.X, expected)
        np.testing.assert_array_equal(a.mask, mask)
        assert len(a.columns) == expected.shape[-1]
        # Xy: the same design with the outcome appended, X a view of it
        np.testing.assert_array_equal(a.Xy[..., :-1], expected)
        np.testing.assert_array_equal(a.Xy[..., -1], np.where(mask, y, 0.0))
        assert np.shares_memory(a.X, a.Xy)


def test_fit_on_prepared_design_equals_fit_reml(sft_small, monkeypatch):
    """fit_reml_masked on ModelArrays.Xy reproduces fit_reml on (y, X, mask): partially nested
    (group), randomised cluster (municipality / period effects) and singleton clusterings, in
    one block and in several (BLOCK_REPS = 8, so the sizes are merged across blocks)."""
    for block in (BLOCK_REPS, 8):
        monkeypatch.setattr("trialsim.analyse.reml.BLOCK_REPS", block)
        for data in sft_small:
            a = ancova_arrays(data, "psp")
            singleton = np.where(a.group >= 0, a.group, 100 + np.arange(a.group.shape[1]))
            for cluster in (a.group, np.where(a.cluster >= 0, a.cluster, a.group), singleton):
                old = fit_reml(a.y, a.X, cluster, a.mask)
                new = fit_reml_masked(a.Xy, cluster, a.mask, threads=2)
                for name in ("beta", "cov_beta", "ratio", "sigma2_residual", "reml_loglik"):
                    np.testing.assert_allclose(
                        getattr(new, name), getattr(old, name), rtol=1e-12, atol=0, err_msg=name
                    )
                for name in ("df", "boundary", "converged", "failed"):
                    np.testing.assert_allclose(
                        getattr(new.estimates, name), getattr(old.estimates, name), rtol=1e-10
                    )
                assert not np.isnan(new.beta).all()


def test_fit_on_prepared_design_rejects_non_finite_values(sft_small):
    a = ancova_arrays(sft_small[0], "psp")
    Xy = a.Xy.copy()
    Xy[0, 0, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fit_reml_masked(Xy, a.group, a.mask)
