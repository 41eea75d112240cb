"""Batched OLS: ANCOVA ignoring clustering, and cluster-robust OLS with CR2.

ANCOVA (:func:`fit_ols`) regresses y on X and uses the classical SE with ``n - p`` df. It
ignores the clustering of treated participants on purpose: docs/analyses.md shows what
goes wrong.

Cluster-robust OLS (:func:`fit_ols_cluster`) keeps the OLS estimate and replaces its variance
by a sandwich over clusters. The clusters are the random-intercept units (treatment groups);
every row with cluster ``-1`` (an untreated control) is a cluster of its own, i.e. for
controls the estimator is the heteroscedasticity-consistent HC2 one. Variants:

* ``"CR2"`` (default): Bell & McCaffrey (2002, Survey Methodology 28:169) bias-reduced
  linearisation, ``V = B [sum_c X_c' A_c e_c e_c' A_c X_c] B`` with ``B = (X'X)^-1``,
  ``A_c = (I - H_cc)^{-1/2}`` (symmetric inverse square root; a Moore-Penrose version where a
  cluster has leverage 1, as in clubSandwich), with the Bell-McCaffrey degrees of freedom of
  Imbens & Kolesár (2016, REStat 98:701, their K_BM) under the working model ``Omega =
  sigma^2 I``: ``df = (sum_i l_i)^2 / sum_i l_i^2`` with ``l_i`` the eigenvalues of ``G'G``,
  ``G = [(I - H)_{.c} A_c X_c B e_k]_c``. Both traces are computed from p x p sums (no
  C x C matrix): ``(G'G)_cd = delta_cd g_c'g_c - u_c' B u_d`` with ``g_c = A_c X_c B e_k`` and
  ``u_c = X_c' g_c``.
* ``"CR3"``: ``A_c = (I - H_cc)^{-1}``, the jackknife-like correction of Mancl & DeRouen
  (2001, Biometrics 57:126), with the same BM df.
* ``"CR1"``: ``A_c = I`` scaled by ``C/(C-1) (n-1)/(n-p)`` (Stata's and statsmodels'
  ``cov_type="cluster"`` default), df ``C - 1``.
* ``"CR0"``: ``A_c = I``, no scaling, df ``C - 1``.

:func:`cluster_robust` holds the sandwich for any least-squares-form estimating equations:
:func:`fit_2sls_cluster` (two-stage least squares, the projected design) and the GLM/GEE
fits of :mod:`trialsim.analyse.glm` and :mod:`trialsim.analyse.gee` (weighted design,
Pearson residuals) use it too.

Everything is batched over replicates and clusters: cluster blocks are padded to the largest
cluster size and their ``I - H_cc`` are decomposed by one batched ``eigh`` over all
(replicate, cluster) pairs; singleton clusters use the scalar leverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.prepare import batch_inputs

__all__ = [
    "OLSFit",
    "cluster_robust",
    "fit_2sls_cluster",
    "fit_ols",
    "fit_ols_cluster",
    "ols_batch",
]

_RANK_TOL = 1e-10
_LEVERAGE_TOL = 1e-10


def _prepare(y, X, mask):
    y, X, used = batch_inputs(y, X, mask)
    X = np.broadcast_to(X, (*y.shape, X.shape[-1]))
    used &= np.isfinite(X).all(axis=-1)
    Xm = np.where(used[..., None], X, 0.0)
    ym = np.where(used, y, 0.0)
    return ym, Xm, used


def _solve_normal(ym, Xm, used):
    """OLS for every replicate: (beta, (X'X)^-1, residuals, n, failed)."""
    n_rep, _, p = Xm.shape
    XtX = np.matmul(Xm.transpose(0, 2, 1), Xm)
    Xty = np.matmul(ym[:, None, :], Xm)[:, 0]
    n_obs = used.sum(axis=1)
    d = np.sqrt(np.diagonal(XtX, axis1=1, axis2=2))
    failed = (n_obs <= p) | ~(d > 0).all(axis=1)
    d = np.where(d > 0, d, 1.0)
    scaled = XtX / d[:, :, None] / d[:, None, :]
    scaled = np.where(failed[:, None, None], np.eye(p), scaled)
    # rank check on the smallest eigenvalue of the column-scaled X'X
    eig_min = np.linalg.eigvalsh(scaled)[:, 0]
    failed |= ~(eig_min > _RANK_TOL)
    scaled = np.where(failed[:, None, None], np.eye(p), scaled)
    B = np.linalg.inv(scaled) / d[:, :, None] / d[:, None, :]
    beta = np.matmul(B, Xty[:, :, None])[:, :, 0]
    resid = np.where(used, ym - np.matmul(Xm, beta[:, :, None])[:, :, 0], 0.0)
    return beta, B, resid, n_obs, failed


@dataclass(frozen=True)
class OLSFit:
    """A batched least-squares fit (arrays with leading replicate axis R).

    ``X`` and ``resid`` are zero in unused rows; ``bread`` is ``(X'X)^-1``; failed
    (rank-deficient or too few rows) replicates hold finite placeholder numbers and
    ``failed=True``.
    """

    beta: np.ndarray  # (R, p)
    bread: np.ndarray  # (R, p, p)
    resid: np.ndarray  # (R, N)
    X: np.ndarray  # (R, N, p)
    used: np.ndarray  # (R, N)
    n_obs: np.ndarray  # (R,)
    failed: np.ndarray  # (R,)

    @property
    def rss(self) -> np.ndarray:
        return (self.resid**2).sum(axis=1)


def ols_batch(y: np.ndarray, X: np.ndarray, mask: np.ndarray | None = None) -> OLSFit:
    """Least squares of y (R, N) on X (R, N, p) or (N, p) for every replicate.

    Rows with non-finite y or X, or outside ``mask``, are left out. The building block of
    :func:`fit_ols`, :func:`fit_ols_cluster`, the 2SLS of :func:`fit_2sls_cluster` and the
    factored likelihood of :mod:`trialsim.analyse.missing`.
    """
    ym, Xm, used = _prepare(y, X, mask)
    beta, B, resid, n_obs, failed = _solve_normal(ym, Xm, used)
    return OLSFit(beta, B, resid, Xm, used, n_obs, failed)


def fit_ols(
    y: np.ndarray,
    X: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    coef: int = 1,
    analysis: str = "ancova",
    level: float = 0.95,
) -> Estimates:
    """OLS of y on X for every replicate, classical SE and ``n - p`` df.

    Parameters
    ----------
    y : (R, N) outcome, NaN where missing.
    X : (R, N, p) or (N, p) design; the effect of interest is column ``coef``.
    mask : (R, N) rows to use; rows with non-finite y or X are always dropped.

    Returns the batched :class:`Estimates` (``variance={"residual": sigma^2}``); rank-deficient
    replicates are ``failed`` with NaNs.
    """
    fit = ols_batch(y, X, mask)
    p = fit.X.shape[-1]
    failed = fit.failed
    df = (fit.n_obs - p).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = fit.rss / df
    se = np.sqrt(s2 * fit.bread[:, coef, coef])
    nan = np.full(len(se), np.nan)
    return Estimates.from_t(
        analysis,
        np.where(failed, nan, fit.beta[:, coef]),
        np.where(failed, nan, se),
        np.where(failed, nan, df),
        level=level,
        variance={"residual": np.where(failed, nan, s2)},
        failed=failed,
    )


def _psd_power(M: np.ndarray, power: float) -> np.ndarray:
    """Symmetric (pseudo-)power of a batch of PSD matrices (``-0.5``: inverse square root).

    Eigenvalues below the tolerance (a cluster with leverage 1) are dropped, the Moore-Penrose
    convention of clubSandwich."""
    vals, vecs = np.linalg.eigh(M)
    keep = vals > _LEVERAGE_TOL
    scaled = np.where(keep, np.where(keep, vals, 1.0) ** power, 0.0)
    return np.matmul(vecs * scaled[..., None, :], vecs.swapaxes(-1, -2))


def fit_ols_cluster(
    y: np.ndarray,
    X: np.ndarray,
    cluster: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    coef: int = 1,
    vcov: str = "CR2",
    analysis: str = "ols_cr2",
    level: float = 0.95,
) -> Estimates:
    """OLS with a cluster-robust variance for every replicate (see the module docstring).

    Parameters
    ----------
    y : (R, N) outcome, NaN where missing.
    X : (R, N, p) or (N, p) design; the effect of interest is column ``coef``.
    cluster : (R, N) int cluster ids 0..G-1; -1 = a cluster of its own (e.g. a control).
    mask : (R, N) rows to use; rows with non-finite y or X are always dropped.
    vcov : ``"CR2"`` (Bell-McCaffrey, BM df), ``"CR3"`` (``A_c = (I - H_cc)^-1``, BM df),
        ``"CR1"`` or ``"CR0"`` (df = clusters - 1).

    Returns the batched :class:`Estimates`; rank-deficient replicates are ``failed``.
    """
    fit = ols_batch(y, X, mask)
    return _coefficient_estimates(
        analysis,
        fit.beta,
        fit.X,
        fit.resid,
        fit.bread,
        cluster,
        fit.used,
        fit.failed,
        coef=coef,
        vcov=vcov,
        level=level,
    )


def _coefficient_estimates(
    analysis, beta, X, resid, bread, cluster, used, failed, *, coef, vcov, level
) -> Estimates:
    """Coefficient ``coef`` of a least-squares fit with its cluster-robust SE and df
    (:func:`cluster_robust`); failed fits and those with fewer than 2 clusters are NaN."""
    n_rep, _, p = X.shape
    contrast = np.zeros((n_rep, p))
    contrast[:, coef] = 1.0
    var, df, n_clusters = cluster_robust(X, resid, bread, contrast, cluster, used, vcov=vcov)
    failed = failed | (n_clusters < 2)
    nan = np.full(n_rep, np.nan)
    return Estimates.from_t(
        analysis,
        np.where(failed, nan, beta[:, coef]),
        np.where(failed, nan, np.sqrt(var)),
        np.where(failed, nan, df),
        level=level,
        failed=failed,
    )


def fit_2sls_cluster(
    y: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    cluster: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    coef: int = 1,
    vcov: str = "CR2",
    analysis: str = "2sls",
    level: float = 0.95,
) -> Estimates:
    """Two-stage least squares with a cluster-robust variance, batched over replicates.

    ``X`` (R, N, p) holds the regressors (exogenous and endogenous), ``Z`` (R, N, q >= p) the
    instruments (the exogenous regressors and the excluded instruments). The first stage
    projects ``X_hat = Z (Z'Z)^-1 Z'X``; the second stage is least squares of y on ``X_hat``;
    the residuals are the structural ``y - X beta``. The sandwich treats ``X_hat`` as the
    design (clubSandwich's treatment of ``ivreg``): ``V = B sum_c X_hat_c' A_c e_c e_c' A_c
    X_hat_c B`` with ``B = (X_hat'X_hat)^-1`` and ``A_c`` from ``H = X_hat B X_hat'``.
    With ``vcov="CR1"`` it equals the usual clustered 2SLS covariance with the
    ``C/(C-1) (n-1)/(n-p)`` factor (linearmodels ``IV2SLS(...).fit(cov_type="clustered",
    debiased=True)``). Other arguments as :func:`fit_ols_cluster`.

    References
    ----------
    Bell RM, McCaffrey DF (2002). Survey Methodology 28:169-181.
    Pustejovsky JE, Tipton E (2018). Small-sample methods for cluster-robust variance
    estimation and hypothesis testing in fixed effects models. J Bus Econ Stat 36:672-683.
    """
    ym, Xm, used = _prepare(y, X, mask)
    _, Zm, used = _prepare(y, Z, used)
    Xm = np.where(used[..., None], Xm, 0.0)
    ym = np.where(used, ym, 0.0)
    _, Bz, _, _, failed_z = _solve_normal(ym, Zm, used)
    Xhat = np.matmul(Zm, np.matmul(Bz, np.matmul(Zm.transpose(0, 2, 1), Xm)))
    beta, B, _, n_obs, failed = _solve_normal(ym, Xhat, used)
    failed |= failed_z
    resid = np.where(used, ym - np.matmul(Xm, beta[:, :, None])[:, :, 0], 0.0)
    return _coefficient_estimates(
        analysis,
        beta,
        Xhat,
        resid,
        B,
        cluster,
        used,
        failed,
        coef=coef,
        vcov=vcov,
        level=level,
    )


def cluster_robust(
    X: np.ndarray,
    resid: np.ndarray,
    bread: np.ndarray,
    contrast: np.ndarray,
    cluster: np.ndarray,
    used: np.ndarray,
    *,
    vcov: str = "CR2",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster-robust variance of ``contrast' beta`` and its df, batched over replicates.

    The estimating equations are those of least squares, ``sum_i x_i e_i = 0``, with ``bread
    = (X'X)^-1``; a GLM (IRLS) or 2SLS fit enters in that form (a GLM with the working-weight
    scaled design ``W^(1/2) X`` and Pearson residuals ``W^(-1/2)(y - mu)``; 2SLS with the
    first-stage projection ``X_hat`` and the structural residuals), as in clubSandwich.

    Parameters
    ----------
    X : (R, N, p) design, zero in unused rows; resid : (R, N), zero in unused rows;
    bread : (R, p, p) ``(X'X)^-1``; contrast : (R, p) the linear combination of interest;
    cluster : (R, N) ids 0..G-1, -1 a singleton; used : (R, N) rows in the fit.
    vcov : ``"CR0"``, ``"CR1"``, ``"CR2"`` (Bell & McCaffrey 2002) or ``"CR3"`` (Mancl &
        DeRouen 2001, Biometrics 57:126: ``A_c = (I - H_cc)^-1``, the jackknife-like
        correction; statsmodels GEE ``cov_type="bias_reduced"``).

    Returns ``(variance, df, n_clusters)``, each (R,). df is Bell-McCaffrey for CR2/CR3 and
    ``clusters - 1`` for CR0/CR1 (see the module docstring).
    """
    if vcov not in ("CR0", "CR1", "CR2", "CR3"):
        raise ValueError(f"vcov must be 'CR0', 'CR1', 'CR2' or 'CR3', got {vcov!r}")
    Xm, B = X, bread
    n_rep, n, p = Xm.shape
    cluster = np.broadcast_to(np.asarray(cluster, dtype=np.int64), (n_rep, n))
    n_obs = used.sum(axis=1)
    k = np.matmul(B, contrast[:, :, None])[:, :, 0]  # B c, (R, p)
    xk = np.matmul(Xm, k[:, :, None])[:, :, 0]  # x_i' B c, (R, N)
    power = -1.0 if vcov == "CR3" else -0.5
    bias_reduced = vcov in ("CR2", "CR3")

    # singleton clusters: unclustered used rows
    single = used & (cluster < 0)
    if bias_reduced:
        lev = np.einsum("rni,rij,rnj->rn", Xm, B, Xm)
        one_minus = 1.0 - lev
        ok = one_minus > _LEVERAGE_TOL
        adj = np.where(single & ok, np.where(ok, one_minus, 1.0) ** power, 0.0)
    else:
        adj = single.astype(float)
    g1 = adj * xk  # g for singleton clusters, (R, N)
    meat = ((g1 * resid) ** 2).sum(axis=1)
    gg1 = g1**2
    u1 = Xm * g1[:, :, None]  # (R, N, p)
    ubu1 = np.einsum("rni,rij,rnj->rn", u1, B, u1)
    W = np.matmul(u1.transpose(0, 2, 1), u1)
    tr1 = gg1.sum(axis=1) - ubu1.sum(axis=1)
    tr2 = (gg1**2).sum(axis=1) - 2.0 * (gg1 * ubu1).sum(axis=1)
    n_single = single.sum(axis=1)

    # grouped clusters: pad every (replicate, cluster) block to the largest size
    n_groups = max(int(cluster.max()) + 1, 0)
    grouped = used & (cluster >= 0)
    n_clusters = n_single.copy()
    if n_groups > 0 and grouped.any():
        key = (np.arange(n_rep)[:, None] * n_groups + cluster)[grouped]
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        sizes = np.bincount(key_sorted, minlength=n_rep * n_groups)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        pos = np.arange(key_sorted.size) - starts[key_sorted]
        m = int(sizes.max())
        cells = np.flatnonzero(sizes > 0)
        cell_of = np.full(n_rep * n_groups, -1)
        cell_of[cells] = np.arange(cells.size)
        rep_of_cell = cells // n_groups
        Xc = np.zeros((cells.size, m, p))
        ec = np.zeros((cells.size, m))
        xkc = np.zeros((cells.size, m))
        rows = np.flatnonzero(grouped.ravel())[order]
        target = (cell_of[key_sorted], pos)
        Xc[target] = Xm.reshape(-1, p)[rows]
        ec[target] = resid.ravel()[rows]
        xkc[target] = xk.ravel()[rows]
        Bc = B[rep_of_cell]
        if bias_reduced:
            H = np.einsum("cai,cij,cbj->cab", Xc, Bc, Xc)
            A = _psd_power(np.eye(m) - H, power)
            gc = np.matmul(A, xkc[:, :, None])[:, :, 0]
        else:
            gc = xkc
        uc = np.matmul(Xc.transpose(0, 2, 1), gc[:, :, None])[:, :, 0]  # (C, p)
        ggc = (gc**2).sum(axis=1)
        ubuc = np.einsum("ci,cij,cj->c", uc, Bc, uc)
        per_cell = np.stack(
            [(gc * ec).sum(axis=1) ** 2, ggc - ubuc, ggc**2 - 2.0 * ggc * ubuc, np.ones_like(ggc)],
            axis=1,
        )
        per_rep = _sum_by(rep_of_cell, per_cell, n_rep).T
        meat += per_rep[0]
        tr1 += per_rep[1]
        tr2 += per_rep[2]
        n_clusters = n_clusters + per_rep[3].astype(int)
        W = W + _sum_by(rep_of_cell, uc[:, :, None] * uc[:, None, :], n_rep)
    BW = np.matmul(B, W)
    tr2 += (BW * BW.transpose(0, 2, 1)).sum(axis=(1, 2))

    var = meat
    if bias_reduced:
        with np.errstate(divide="ignore", invalid="ignore"):
            df = tr1**2 / tr2
    else:
        df = (n_clusters - 1).astype(float)
        if vcov == "CR1":
            with np.errstate(divide="ignore", invalid="ignore"):
                var = var * n_clusters / (n_clusters - 1) * (n_obs - 1) / (n_obs - p)
    return var, df, n_clusters


def _sum_by(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum the rows of ``values`` into ``n`` bins given by ``index``."""
    width = int(np.prod(values.shape[1:]))
    flat = (index[:, None] * width + np.arange(width)).ravel()
    out = np.bincount(flat, weights=values.reshape(-1), minlength=n * width)
    return out.reshape(n, *values.shape[1:])
