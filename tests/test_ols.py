"""Oracles for batched OLS ANCOVA and cluster-robust CR2 (trialsim.analyse.ols).

* ANCOVA against statsmodels ``OLS`` (classical SE, df = n - p) to 1e-10.
* CR2 against a naive per-replicate dense implementation written here from Bell & McCaffrey
  (2002, Survey Methodology 28:169), eq. for V_BRL with A_c = (I - H_cc)^{-1/2}, and the
  Bell-McCaffrey df as in Imbens & Kolesár (2016, REStat 98:701, K_BM): eigenvalues of
  G'G with G = [(I - H)_{.c} A_c X_c (X'X)^-1 e_k]_c, formed as a dense C x C matrix.
* CR0/CR1 against statsmodels ``cov_type="cluster"``: ``use_correction=False`` is CR0;
  the default is CR1 = CR0 * C/(C-1) * (n-1)/(n-p) (statsmodels sandwich_covariance).
"""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from trialsim.analyse.ols import fit_2sls_cluster, fit_ols, fit_ols_cluster


def partially_nested(rng, n_rep, *, icc=0.08, missing=0.0):
    """9 strata, 27 treatment groups of ~6 (sizes 4-8), 171 controls with cluster -1."""
    n_strata, n_groups, n_ctrl = 9, 27, 171
    sizes = rng.integers(4, 9, size=n_groups)
    group = np.concatenate([np.repeat(np.arange(n_groups), sizes), -np.ones(n_ctrl, int)])
    stratum = np.concatenate(
        [np.repeat(np.arange(n_groups) % n_strata, sizes), np.arange(n_ctrl) % n_strata]
    )
    n = group.size
    treat = (group >= 0).astype(float)
    X = np.zeros((n_rep, n, 3 + n_strata - 1))
    X[..., 0] = 1.0
    X[..., 1] = treat
    X[..., 2] = rng.normal(size=(n_rep, n))
    for s in range(1, n_strata):
        X[..., 2 + s] = stratum == s
    u = rng.normal(scale=np.sqrt(icc / (1 - icc)), size=(n_rep, n_groups))
    y = 0.3 * treat + 0.5 * X[..., 2] + rng.normal(size=(n_rep, n))
    y *= 1.0 + 0.5 * treat  # heteroscedastic arms, as in the partially nested design
    y += np.where(group >= 0, u[:, np.maximum(group, 0)], 0.0)
    if missing:
        y[rng.random((n_rep, n)) < missing] = np.nan
    return y, X, np.broadcast_to(group, (n_rep, n)).copy()


def naive_cr2(y, X, cluster, coef=1, *, power=-0.5, Z=None):
    """One replicate, plainly: CR2 (power -1/2) or CR3 (power -1) variance and the
    Bell-McCaffrey df for coefficient coef. With instruments Z: 2SLS, the sandwich on the
    projected design X_hat = Z (Z'Z)^-1 Z'X with structural residuals y - X beta."""
    keep = np.isfinite(y)
    y, X, cluster = y[keep], X[keep], cluster[keep]
    ids = np.where(cluster >= 0, cluster, cluster.max() + 1 + np.arange(len(y)))
    if Z is not None:
        Z = Z[keep]
        X_struct, X = X, Z @ np.linalg.solve(Z.T @ Z, Z.T @ X)
    B = np.linalg.inv(X.T @ X)
    H = X @ B @ X.T
    e = y - H @ y if Z is None else y - X_struct @ (B @ X.T @ y)
    M = np.eye(len(y)) - H
    meat = np.zeros((X.shape[1], X.shape[1]))
    columns = []
    for c in np.unique(ids):
        rows = ids == c
        vals, vecs = np.linalg.eigh(np.eye(rows.sum()) - H[np.ix_(rows, rows)])
        A = vecs @ np.diag(vals**power) @ vecs.T
        s = X[rows].T @ A @ e[rows]
        meat += np.outer(s, s)
        g = A @ X[rows] @ B[:, coef]
        columns.append(M[:, rows] @ g)
    V = B @ meat @ B
    G = np.stack(columns, axis=1)
    lam = np.linalg.eigvalsh(G.T @ G)
    return np.sqrt(V[coef, coef]), lam.sum() ** 2 / (lam**2).sum()


@pytest.fixture(scope="module")
def data():
    return partially_nested(np.random.default_rng(2024), 6, missing=0.08)


def test_ancova_against_statsmodels_ols(data):
    y, X, _ = data
    est = fit_ols(y, X)
    for r in range(len(y)):
        keep = np.isfinite(y[r])
        res = sm.OLS(y[r][keep], X[r][keep]).fit()
        assert est.estimate[r] == pytest.approx(res.params[1], abs=1e-10)
        assert est.se[r] == pytest.approx(res.bse[1], abs=1e-10)
        assert est.df[r] == res.df_resid
        assert est.p_value[r] == pytest.approx(res.pvalues[1], rel=1e-8)


def test_cr2_against_naive_dense_implementation(data):
    y, X, cluster = data
    est = fit_ols_cluster(y, X, cluster)
    for r in range(len(y)):
        se, df = naive_cr2(y[r], X[r], cluster[r])
        assert est.se[r] == pytest.approx(se, rel=1e-10)
        assert est.df[r] == pytest.approx(df, rel=1e-9)
    # another coefficient, to exercise the contrast
    est2 = fit_ols_cluster(y, X, cluster, coef=2)
    se, df = naive_cr2(y[0], X[0], cluster[0], coef=2)
    assert est2.se[0] == pytest.approx(se, rel=1e-10) and est2.df[0] == pytest.approx(df)


def test_cr3_against_naive_dense_implementation(data):
    y, X, cluster = data
    est = fit_ols_cluster(y, X, cluster, vcov="CR3")
    for r in range(len(y)):
        se, df = naive_cr2(y[r], X[r], cluster[r], power=-1.0)
        assert est.se[r] == pytest.approx(se, rel=1e-10)
        assert est.df[r] == pytest.approx(df, rel=1e-9)


def test_2sls_cr2_against_naive_dense_implementation(data):
    """Treatment column replaced by an endogenous 'dose' instrumented by the arm."""
    y, Z, cluster = data
    rng = np.random.default_rng(9)
    X = Z.copy()
    X[..., 1] = Z[..., 1] * rng.uniform(0, 1, size=Z.shape[:2])
    est = fit_2sls_cluster(y, X, Z, cluster)
    for r in range(len(y)):
        se, df = naive_cr2(y[r], X[r], cluster[r], Z=Z[r])
        keep = np.isfinite(y[r])
        beta = np.linalg.solve(Z[r][keep].T @ X[r][keep], Z[r][keep].T @ y[r][keep])
        assert est.estimate[r] == pytest.approx(beta[1], rel=1e-10)
        assert est.se[r] == pytest.approx(se, rel=1e-10)
        assert est.df[r] == pytest.approx(df, rel=1e-9)


@pytest.mark.parametrize("vcov, use_correction", [("CR0", False), ("CR1", True)])
def test_cr0_cr1_against_statsmodels_cluster(data, vcov, use_correction):
    y, X, cluster = data
    est = fit_ols_cluster(y, X, cluster, vcov=vcov, analysis=vcov)
    for r in range(len(y)):
        keep = np.isfinite(y[r])
        groups = np.where(cluster[r] >= 0, cluster[r], 1000 + np.arange(y.shape[1]))[keep]
        res = sm.OLS(y[r][keep], X[r][keep]).fit(
            cov_type="cluster", cov_kwds={"groups": groups, "use_correction": use_correction}
        )
        assert est.se[r] == pytest.approx(res.bse[1], rel=1e-10)
        assert est.df[r] == len(np.unique(groups)) - 1


def test_batched_equals_one_at_a_time(data):
    y, X, cluster = data
    batch = fit_ols_cluster(y, X, cluster)
    ancova = fit_ols(y, X)
    for r in range(len(y)):
        one = fit_ols_cluster(y[r : r + 1], X[r : r + 1], cluster[r : r + 1])
        np.testing.assert_allclose(one.se, batch.se[r : r + 1], rtol=1e-12)
        np.testing.assert_allclose(one.df, batch.df[r : r + 1], rtol=1e-12)
        a = fit_ols(y[r : r + 1], X[r : r + 1])
        np.testing.assert_allclose(a.se, ancova.se[r : r + 1], rtol=1e-12)


def test_cluster_with_leverage_one_and_failed_replicate():
    """A cluster-specific dummy makes I - H_cc singular: pseudo-inverse square root, finite.
    A rank-deficient replicate is failed with NaNs and does not disturb the others."""
    y, X, cluster = partially_nested(np.random.default_rng(4), 3)
    X = np.concatenate([X, (cluster == 0)[..., None].astype(float)], axis=-1)
    est = fit_ols_cluster(y, X, cluster)
    assert np.isfinite(est.se).all() and np.isfinite(est.df).all()
    X2 = X.copy()
    X2[1, :, 3] = 0.0
    bad = fit_ols_cluster(y, X2, cluster)
    np.testing.assert_array_equal(bad.failed, [False, True, False])
    np.testing.assert_allclose(bad.se[[0, 2]], est.se[[0, 2]], rtol=1e-12)
    assert np.isnan(fit_ols(y, X2).se[1])
