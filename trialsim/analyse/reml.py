"""Batched REML for a linear model with one random intercept, with Satterthwaite df.

Model, for each replicate::

    y = X beta + Z u + e,   u_c ~ N(0, sigma2_cluster),   e ~ N(0, sigma2_residual),

where Z maps a row to its cluster and rows with cluster ``-1`` carry no random effect. The
one engine covers the partially nested model (lme4 ``y ~ treat + baseline + muni +
(0 + treat | group)``: controls have cluster -1), its "singleton" variant (each control its
own cluster), the cluster-randomised model and the stepped-wedge model (period columns in X).

How it is computed
------------------
With ``lam = sigma2_cluster / sigma2_residual`` the cluster block of ``V / sigma2_residual`` is
``I + lam 11'`` whose inverse is ``I - w_c 11'`` with ``w_c = lam / (1 + lam n_c)`` and
``log|V_lam| = sum_c log(1 + lam n_c)``. So with ``W = [X, y]``, row cross-products
``S = W'W`` and cluster sums ``z_c = sum_{i in c} W_i``::

    A(lam) = W' V_lam^-1 W = S - sum_c w_c z_c z_c' = S - sum_s w_s T_s,

where ``T_s`` pools ``z_c z_c'`` over the clusters of size ``s`` (few distinct sizes, so the
singleton variant costs no more than the grouped one). A Cholesky factor of the
``(p+1) x (p+1)`` matrix ``A`` gives ``log|X'V^-1 X|`` and the GLS residual sum of squares
``Q`` (its last pivot), hence the REML criterion profiled over beta and sigma2_residual::

    d(lam) = sum_c log(1 + lam n_c) + log|A_xx(lam)| + (n - p) log Q(lam).

``d`` is minimised for every replicate: a common grid (with ``lam = 0`` exactly), then
safeguarded Newton steps on ``d'(lam) = 0`` with analytic first and second derivatives, until
a step is below 1e-7 of ``lam`` (quadratic convergence: that step is the error left, and the
REML criterion is then exact to ~1e-14). If the grid minimum is ``lam = 0`` and
``d'(0) >= 0`` the fit is on the boundary: ``sigma2_cluster = 0`` exactly (the fixed-effects
model), flagged ``boundary``; this never fails.

The row cross-products ``S`` are one batched matmul; the cluster sums, their size-pooled
products and the optimisation are compiled per-replicate loops
(:mod:`trialsim.analyse.reml_kernels`), which keep a replicate's ``q x q`` matrices in cache;
the Satterthwaite step is batched numpy again. The batch is processed in blocks of
:data:`BLOCK_REPS` replicates, on a few threads (numpy and the kernels release the GIL); a
replicate's fit uses only its own rows, so the result does not depend on the number of
threads.

Satterthwaite degrees of freedom
--------------------------------
As in lmerTest (Kuznetsova, Brockhoff & Christensen 2017, J Stat Softw 82(13), section 3;
Satterthwaite 1946): ``df = 2 f^2 / (g' Cov g)`` with ``f = Var(beta_k)`` as a function of the
variance parameters, ``g`` its gradient and ``Cov = 2 H^-1`` the asymptotic covariance of the
variance parameters from ``H``, the *observed* Hessian of the REML deviance (``-2 loglik``) at
the optimum. lmerTest differentiates numerically in the (theta, sigma) parameterisation; here
``H`` and ``g`` are analytic in ``(lam, sigma2_residual)``. At an interior optimum the gradient
of the deviance is zero, so ``g' H^-1 g`` (and the df) does not depend on the
parameterisation: the two agree up to lmerTest's numerical-derivative error.

At the boundary (``sigma2_cluster = 0``) lmerTest's deviance is even in theta, so the theta
components of ``g`` and of the Hessian cross-term vanish and its df reduces to the residual df
of the fixed-effects model, ``n - p``; that is what is returned there.

Kenward-Roger
-------------
``df="kenward-roger"``: the SE from Kenward and Roger's adjusted covariance and their df,
from the cluster sums pooled by size (:func:`trialsim.analyse.kenward_roger.
kenward_roger_pooled`; pbkrtest keeps the cluster variance as a parameter at zero too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.kenward_roger import check_df_method, kenward_roger_pooled
from trialsim.analyse.linalg import full_rank, safe_cholesky
from trialsim.analyse.prepare import batch_inputs, check_coef, masked_inputs
from trialsim.analyse.reml_kernels import cluster_sums, fit_ratio, pool_by_size
from trialsim.parallel import map_in_threads

__all__ = [
    "ClusterStats",
    "ProfiledGrid",
    "RemlFit",
    "cluster_stats",
    "fit_reml",
    "fit_reml_masked",
    "fit_reml_stats",
    "effect_last",
    "profiled_from_cross",
    "profiled_grid",
]

# Common grid for lam = sigma2_cluster / sigma2_residual: 0 exactly, then log-spaced.
_GRID = np.concatenate([[0.0], np.logspace(-4.0, 3.0, 11)])
_STEP_TOL = 1e-7
_MAX_NEWTON = 60
BLOCK_REPS = 256  # replicates per block: (block, N, p) design arrays of a few MB


@dataclass(frozen=True)
class ClusterStats:
    """Sufficient statistics of a batch for the random-intercept model.

    All arrays have leading length R. ``W = [X, y]`` has ``q = p + 1`` columns.

    Attributes
    ----------
    cross : (R, q, q) ``W'W`` over the rows used.
    sizes : (S,) the distinct non-zero cluster sizes in the batch.
    n_size : (R, S) number of clusters of each size.
    cross_size : (R, S, q, q) sum over clusters of each size of ``z_c z_c'``, ``z_c`` the
        cluster sum of ``W``.
    n_obs : (R,) rows used.
    n_clusters : (R,) non-empty clusters.
    """

    cross: np.ndarray
    sizes: np.ndarray
    n_size: np.ndarray
    cross_size: np.ndarray
    n_obs: np.ndarray
    n_clusters: np.ndarray

    @property
    def n_coef(self) -> int:
        return self.cross.shape[-1] - 1

    def take(self, index: slice | np.ndarray) -> ClusterStats:
        """The statistics of the replicates at ``index`` (same ``sizes``)."""
        return ClusterStats(
            cross=self.cross[index],
            sizes=self.sizes,
            n_size=self.n_size[index],
            cross_size=self.cross_size[index],
            n_obs=self.n_obs[index],
            n_clusters=self.n_clusters[index],
        )

    @staticmethod
    def concat(parts: list[ClusterStats]) -> ClusterStats:
        """Stack blocks of replicates; their cluster sizes are merged (zeros where absent)."""
        if len(parts) == 1:
            return parts[0]
        sizes = np.unique(np.concatenate([part.sizes for part in parts]))
        n_size, cross_size = [], []
        for part in parts:
            at = np.searchsorted(sizes, part.sizes)
            counts = np.zeros((len(part.n_obs), sizes.size))
            counts[:, at] = part.n_size
            pooled = np.zeros((len(part.n_obs), sizes.size, *part.cross.shape[1:]))
            pooled[:, at] = part.cross_size
            n_size.append(counts)
            cross_size.append(pooled)
        return ClusterStats(
            cross=np.concatenate([part.cross for part in parts]),
            sizes=sizes,
            n_size=np.concatenate(n_size),
            cross_size=np.concatenate(cross_size),
            n_obs=np.concatenate([part.n_obs for part in parts]),
            n_clusters=np.concatenate([part.n_clusters for part in parts]),
        )


@dataclass(frozen=True)
class RemlFit:
    """A batched REML fit (arrays with leading length R).

    Attributes
    ----------
    estimates : the :class:`Estimates` record for coefficient ``coef``.
    beta : (R, p) fixed effects (GLS at the REML variance ratio).
    cov_beta : (R, p, p) their covariance ``sigma2_residual (X'V_lam^-1 X)^-1``.
    sigma2_residual, sigma2_cluster, ratio : (R,) variance components and their ratio lam.
    reml_loglik : (R,) maximised REML log-likelihood (lme4's ``-REMLcrit / 2``).
    stats : the sufficient statistics, for reuse (e.g. Bayesian analyses).
    """

    estimates: Estimates
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2_residual: np.ndarray
    sigma2_cluster: np.ndarray
    ratio: np.ndarray
    reml_loglik: np.ndarray
    stats: ClusterStats


def _broadcast_inputs(y, X, cluster, mask):
    y, X, used = batch_inputs(y, X, mask)
    cluster = np.broadcast_to(np.asarray(cluster, dtype=np.int64), y.shape)
    return y, X, cluster, used


def _map_blocks(fn: Callable[[slice], object], n_rep: int, threads: int | None) -> list:
    """``fn`` over consecutive blocks of :data:`BLOCK_REPS` replicates, on up to ``threads``
    threads (default: one per core); results in block order."""
    blocks = [slice(a, min(a + BLOCK_REPS, n_rep)) for a in range(0, n_rep, BLOCK_REPS)]
    return list(map_in_threads(fn, blocks, threads))


def _masked_rows(y, X, used):
    """W = [X, y] with unused rows zeroed, its cross-product W'W and the final row-use mask.

    The fast path multiplies by the mask; only if the cross-product ``W'W`` then has
    non-finite entries (NaN or inf in X) are the offending rows found and dropped."""
    n_rep, n = y.shape
    p = X.shape[-1]
    W = np.empty((n_rep, n, p + 1))
    np.multiply(X, used.astype(float)[..., None], out=W[..., :p])  # faster than a bool mask
    W[..., p] = np.where(used, y, 0.0)
    cross = np.matmul(W.transpose(0, 2, 1), W)
    bad = ~np.isfinite(cross).all(axis=(1, 2))
    if bad.any():
        used = used & np.isfinite(np.broadcast_to(X, (n_rep, n, p))).all(axis=-1)
        W[~used] = 0.0
        cross[bad] = np.matmul(W[bad].transpose(0, 2, 1), W[bad])
    return W, cross, used


def cluster_stats(
    y: np.ndarray,
    X: np.ndarray,
    cluster: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    threads: int | None = None,
) -> ClusterStats:
    """Cross-products and per-cluster-size sums of ``[X, y]`` for a batch of replicates.

    Parameters
    ----------
    y : (R, N) outcome, NaN where missing.
    X : (R, N, p) or (N, p) fixed-effects design.
    cluster : (R, N) or (N,) int cluster ids 0..G-1; -1 for rows with no random effect.
    mask : (R, N) bool rows to use (combined with finiteness of y and X); None for all.
    threads : blocks of replicates summarised in parallel (default: one per core).
    """
    y, X, cluster, used = _broadcast_inputs(y, X, cluster, mask)
    parts = _map_blocks(
        lambda b: _block_stats(y[b], X if len(X) == 1 else X[b], cluster[b], used[b]),
        len(y),
        threads,
    )
    return ClusterStats.concat(parts)


def _block_stats(y, X, cluster, used) -> ClusterStats:
    """:func:`cluster_stats` of one block of replicates (inputs already broadcast)."""
    return _pooled_stats(*_masked_rows(y, X, used), cluster)


def _pooled_stats(W, cross, used, cluster) -> ClusterStats:
    """:class:`ClusterStats` of one block from ``W = [X, y]`` (zero outside ``used``) and
    ``cross = W'W``."""
    n_groups = max(int(cluster.max()) + 1, 0)
    z, n_c = cluster_sums(
        np.ascontiguousarray(W), np.ascontiguousarray(used), np.ascontiguousarray(cluster), n_groups
    )
    nonzero = n_c[n_c > 0]
    # a batch without any cluster gets one dummy size with no clusters (lam is then 0)
    sizes = np.unique(nonzero).astype(float) if nonzero.size else np.ones(1)
    cross_size, n_size = pool_by_size(z, n_c, sizes)
    return ClusterStats(
        cross=cross,
        sizes=sizes,
        n_size=n_size,
        cross_size=cross_size,
        n_obs=used.sum(axis=1),
        n_clusters=(n_c > 0).sum(axis=1),
    )


def fit_reml_stats(
    stats: ClusterStats,
    *,
    coef: int = 1,
    analysis: str = "reml",
    level: float = 0.95,
    threads: int | None = None,
    df: str = "satterthwaite",
) -> RemlFit:
    """REML fit from precomputed :func:`cluster_stats` (see :func:`fit_reml`)."""
    coef = check_coef(coef, stats.n_coef)
    check_df_method(df)
    parts = _map_blocks(lambda b: _fit_block(stats.take(b), coef, df), len(stats.n_obs), threads)
    return _assemble(parts, stats, analysis, level)


def unfittable(
    S: np.ndarray, n_obs: np.ndarray, coef: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(failed, resid_df, S, aliased)`` for a batch of ``S = [X, y]'[X, y]`` (R, q, q) over
    ``n_obs`` rows.

    A column of X that is zero in every used row (a stratum with no one measured in this
    replicate) is aliased and dropped, as ``lm`` and ``lme4`` drop it: its diagonal in the
    returned ``S`` is 1, which decouples it (coefficient 0, no effect on the other
    coefficients, the variance ratios or the REML criterion), the residual df count the
    columns left, and the caller reports NaN for it (``aliased``, (R, p)). A replicate cannot
    be fitted when column ``coef`` is aliased, with no residual df, a rank-deficient X
    otherwise, or y in the column space of X (Q = 0 leaves nothing to estimate a variance
    from)."""
    q = S.shape[-1]
    p = q - 1
    aliased = np.diagonal(S, axis1=-2, axis2=-1)[:, :p] == 0.0
    if aliased.any():
        S = S.copy()
        S[:, np.arange(p), np.arange(p)] += aliased
    resid_df = (np.asarray(n_obs) - p + aliased.sum(axis=1)).astype(float)
    failed = (resid_df < 1.0) | aliased[:, coef] | ~full_rank(S[:, :p, :p])
    L, ok = safe_cholesky(np.where(failed[:, None, None], np.eye(q), S))
    failed |= ~ok | ~(np.diagonal(L, axis1=-2, axis2=-1)[:, -1] > 0.0)
    return failed, resid_df, S, aliased


def drop_aliased(beta: np.ndarray, cov_beta: np.ndarray, aliased: np.ndarray):
    """``beta`` (R, p) and ``cov_beta`` (R, p, p) with NaN for the aliased columns (R's NA)."""
    if not aliased.any():
        return beta, cov_beta
    beta = np.where(aliased, np.nan, beta)
    cov_beta = np.where(aliased[:, :, None] | aliased[:, None, :], np.nan, cov_beta)
    return beta, cov_beta


def profiled_gls(Ai, resid_df, log_v, log_det_xx) -> tuple[np.ndarray, ...]:
    """GLS at the REML variance ratios from ``Ai = A^-1`` (R, q, q), ``A = [X, y]'V^-1[X, y]``:
    ``(Q, beta, C, sigma2_residual, reml_loglik)`` with ``Q`` the GLS residual sum of squares
    (``1 / (A^-1)_yy``), ``C = (X'V^-1 X)^-1`` and the REML log-likelihood profiled over beta
    and sigma2 (lme4's ``-REMLcrit / 2``) from ``log|V|`` and ``log|X'V^-1 X|``."""
    p = Ai.shape[-1] - 1
    a = Ai[:, :, -1]
    Q = 1.0 / a[:, -1]
    beta = -a[:, :p] * Q[:, None]
    C = Ai[:, :p, :p] - a[:, :p, None] * a[:, None, :p] * Q[:, None, None]
    s2 = Q / resid_df
    reml_loglik = -0.5 * (
        resid_df * (1.0 + np.log(2.0 * np.pi * Q / resid_df)) + log_v + log_det_xx
    )
    return Q, beta, C, s2, reml_loglik


@dataclass(frozen=True)
class ProfiledGrid:
    """The profiled restricted likelihood of the one-term model at given variance ratios,
    for every replicate: arrays (R, K) for R replicates and K ratios.

    Attributes
    ----------
    log_v : ``log|V_lam / sigma2|``.
    log_det_xx : ``log|X'V_lam^-1 X|``.
    Q : GLS residual sum of squares.
    beta : GLS estimate of the coefficient ``coef``.
    c_kk : ``(X'V_lam^-1 X)^-1`` at ``coef`` (its variance is ``sigma2 c_kk``).
    resid_df : (R,) ``n - p``.
    ok : False where ``A = [X, y]'V^-1[X, y]`` is not positive definite (numbers are then
        neutral finite values, not to be used).
    """

    log_v: np.ndarray
    log_det_xx: np.ndarray
    Q: np.ndarray
    beta: np.ndarray
    c_kk: np.ndarray
    resid_df: np.ndarray
    ok: np.ndarray

    def reml_loglik(self) -> np.ndarray:
        """REML log-likelihood profiled over beta and sigma2 (lme4's ``-REMLcrit / 2``)."""
        df = self.resid_df[:, None]
        return -0.5 * (
            df * (1.0 + np.log(2.0 * np.pi * self.Q / df)) + self.log_v + self.log_det_xx
        )


def effect_last(W: np.ndarray, coef: int) -> np.ndarray:
    """Column order of ``W = [X, y]`` (..., q) or its cross-products that puts column
    ``coef`` of X just before y (the layout :func:`profiled_from_cross` reads)."""
    p = W.shape[-1] - 1
    return np.r_[np.delete(np.arange(p), coef), coef, p]


def profiled_from_cross(A: np.ndarray, log_v: np.ndarray, resid_df: np.ndarray) -> ProfiledGrid:
    """The :class:`ProfiledGrid` of ``A = [X, y]'V^-1[X, y]`` (R, K, q, q) with the effect's
    column just before y (:func:`effect_last`) and ``log|V / sigma2|`` (R, K).

    One Cholesky factor of ``A`` gives everything: its last pivot squared is ``Q``, the one
    before it ``1 / c_kk``, and the GLS estimate is ``L_yk / L_kk`` (Schur complements). Every
    model with random intercepts (one term here, nested terms in
    :mod:`trialsim.analyse.reml_nested`) ends in this step."""
    p = A.shape[-1] - 1
    L, ok = safe_cholesky(A)
    piv = np.diagonal(L, axis1=-2, axis2=-1)
    ok &= (piv > 0).all(axis=-1)
    piv = np.where(ok[..., None], piv, 1.0)
    return ProfiledGrid(
        log_v=log_v,
        log_det_xx=2.0 * np.log(piv[..., :p]).sum(axis=-1),
        Q=piv[..., p] ** 2,
        beta=np.where(ok, L[..., p, p - 1], 0.0) / piv[..., p - 1],
        c_kk=1.0 / piv[..., p - 1] ** 2,
        resid_df=np.asarray(resid_df, dtype=float),
        ok=ok,
    )


def profiled_grid(stats: ClusterStats, lam: np.ndarray, *, coef: int = 1) -> ProfiledGrid:
    """The terms of the profiled REML criterion at the ratios ``lam`` (K,) for every replicate
    of ``stats``: the one profiled likelihood behind the REML fit, calibration's ICC posterior
    and the exact Bayesian posterior (see the module docstring for ``A``)."""
    lam = np.asarray(lam, dtype=float)
    S, T = stats.cross, stats.cross_size
    n_rep, q = S.shape[0], S.shape[-1]
    p = q - 1
    coef = check_coef(coef, p)
    order = effect_last(S, coef)
    S = S[:, order][:, :, order]
    T = T[:, :, order][:, :, :, order]
    sizes = stats.sizes
    w = lam[:, None] / (1.0 + lam[:, None] * sizes)  # (K, S)
    A = S[:, None] - np.matmul(w, T.reshape(n_rep, sizes.size, q * q)).reshape(
        n_rep, lam.size, q, q
    )
    log_v = np.matmul(stats.n_size, np.log1p(lam[:, None] * sizes).T)
    return profiled_from_cross(A, log_v, stats.n_obs - p)


def _satterthwaite(lam, Q, C, s2, T, sizes, resid_df, var_k, coef, terms):
    """Satterthwaite df of ``beta_coef`` (``n - p`` at the boundary; module docstring)."""
    p = C.shape[-1]
    boundary = lam == 0.0
    _, _, lv2, la2, lq1, lq2 = terms.T
    # Hessian of D(lam, s) = (n-p) log s + h(lam) + Q(lam)/s, h = log|V| +
    # log|A_xx|, and gradient of f = s C_kk, both analytic (see module docstring).
    h2 = lv2 + la2 - lq2
    q1 = Q * lq1
    q2 = Q * (lq2 + lq1**2)
    h_ll = h2 + q2 / s2
    h_ls = -q1 / s2**2
    h_ss = -resid_df / s2**2 + 2.0 * Q / s2**3
    v = C[:, :, coef]
    # f_l = s2 sum_s w1_s v'T_s v (the derivative of C_kk in lam), as matmuls (einsum is slow)
    v_t_v = (np.matmul(T[:, :, :p, :p], v[:, None, :, None])[..., 0] * v[:, None, :]).sum(-1)
    w1 = 1.0 / (1.0 + lam[:, None] * sizes) ** 2  # -dA/dlam = sum_s w1_s T_s
    f_l = s2 * (w1 * v_t_v).sum(axis=1)
    f_s = C[:, coef, coef]
    det = h_ll * h_ss - h_ls**2
    with np.errstate(divide="ignore", invalid="ignore"):
        quad = (f_l**2 * h_ss - 2.0 * f_l * f_s * h_ls + f_s**2 * h_ll) / det
        df = np.where(boundary, resid_df, var_k**2 / quad)
    return df


def _fit_block(
    stats: ClusterStats, coef: int, df_method: str = "satterthwaite"
) -> dict[str, np.ndarray]:
    """Fit one block of replicates; the arrays of a :class:`RemlFit` (NaN where failed)."""
    S, T = stats.cross, stats.cross_size
    n_size, sizes = stats.n_size, stats.sizes
    q = S.shape[-1]
    p = q - 1
    failed, resid_df, S, aliased = unfittable(S, stats.n_obs, coef)
    if failed.any():  # neutral inputs for the failed replicates (results are NaN)
        S = np.where(failed[:, None, None], np.eye(q), S)
        T = np.where(failed[:, None, None, None], 0.0, T)
        n_size = np.where(failed[:, None], 0.0, n_size)
        resid_df = np.where(failed, 1.0, resid_df)

    lam, converged, Ai, terms = fit_ratio(
        S, T, n_size, sizes, resid_df, _GRID, _STEP_TOL, _MAX_NEWTON
    )
    log_v, log_det_xx = terms.T[:2]
    boundary = lam == 0.0

    Q, beta, C, s2, reml_loglik = profiled_gls(Ai, resid_df, log_v, log_det_xx)
    tau = lam * s2
    cov_beta = s2[:, None, None] * C
    var_k = cov_beta[:, coef, coef]

    if df_method == "kenward-roger":
        scale, df = kenward_roger_pooled(lam, C, T[:, :, :p, :p], n_size, sizes, resid_df, coef)
        cov_beta = s2[:, None, None] * scale
        var_k = cov_beta[:, coef, coef]
        boundary_df = np.zeros_like(boundary)
    else:
        df = _satterthwaite(lam, Q, C, s2, T, sizes, resid_df, var_k, coef, terms)
        boundary_df = boundary
    beta, cov_beta = drop_aliased(beta, cov_beta, aliased)
    bad_df = ~boundary_df & ~(np.isfinite(df) & (df > 0.0))
    converged &= ~bad_df

    return fit_record(
        failed,
        beta=beta,
        cov_beta=cov_beta,
        coef=coef,
        var_k=var_k,
        df=df,
        bad_df=bad_df,
        boundary=boundary,
        converged=converged,
        sigma2_residual=s2,
        sigma2_cluster=tau,
        ratio=lam,
        reml_loglik=reml_loglik,
    )


def fit_record(
    failed, *, beta, cov_beta, coef, var_k, df, bad_df, boundary, converged, **components
) -> dict[str, np.ndarray]:
    """The arrays of one block of a batched REML fit, NaN (flags False) where ``failed`` (R,):
    coefficient ``coef``'s estimate, SE and df (df NaN also where ``bad_df``), the flags,
    ``beta``, ``cov_beta`` and the engine's ``components`` (R, ...): variances, ratios,
    log-likelihood, held terms. The one record shape of every engine."""

    def masked(x):
        x = np.asarray(x)
        where = failed.reshape(-1, *[1] * (x.ndim - 1))
        return x & ~where if x.dtype == bool else np.where(where, np.nan, x)

    return {
        "estimate": masked(beta[:, coef]),
        "se": masked(np.sqrt(var_k)),
        "df": masked(np.where(bad_df, np.nan, df)),
        "boundary": boundary & ~failed,
        "converged": converged & ~failed,
        "failed": failed,
        "beta": masked(beta),
        "cov_beta": masked(cov_beta),
        **{name: masked(x) for name, x in components.items()},
    }


def joined_estimates(parts: list[dict], analysis: str, level: float) -> tuple[dict, Estimates]:
    """The blocks' result arrays joined, and their :class:`Estimates` record: estimate, se,
    df and flags, with the variance components ``sigma2_<name>`` as ``<name>``."""
    out = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    variance = {k.removeprefix("sigma2_"): v for k, v in out.items() if k.startswith("sigma2_")}
    estimates = Estimates.from_t(
        analysis,
        out["estimate"],
        out["se"],
        out["df"],
        level=level,
        variance=variance,
        boundary=out["boundary"],
        converged=out["converged"],
        failed=out["failed"],
    )
    return out, estimates


def _assemble(parts: list[dict], stats: ClusterStats, analysis: str, level: float) -> RemlFit:
    """One :class:`RemlFit` from the blocks' arrays."""
    out, estimates = joined_estimates(parts, analysis, level)
    return RemlFit(
        estimates=estimates,
        beta=out["beta"],
        cov_beta=out["cov_beta"],
        sigma2_residual=out["sigma2_residual"],
        sigma2_cluster=out["sigma2_cluster"],
        ratio=out["ratio"],
        reml_loglik=out["reml_loglik"],
        stats=stats,
    )


def fit_reml(
    y: np.ndarray,
    X: np.ndarray,
    cluster: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    coef: int = 1,
    analysis: str = "reml",
    level: float = 0.95,
    threads: int | None = None,
    df: str = "satterthwaite",
) -> RemlFit:
    """Fit ``y = X beta + u_cluster + e`` by REML for every replicate of a batch.

    Parameters
    ----------
    y : (R, N) outcome, NaN where missing.
    X : (R, N, p) or (N, p) fixed-effects design; the effect of interest is column ``coef``.
    cluster : (R, N) int random-intercept unit, ids 0..G-1; -1 for rows without a random
        effect (e.g. untreated controls of a partially nested trial).
    mask : (R, N) bool rows to use; rows with non-finite y or X are always dropped.
    coef : column of X whose coefficient is reported.
    analysis : name carried by the returned :class:`Estimates`.
    level : confidence level of the t interval (Satterthwaite df).
    threads : blocks of replicates fitted in parallel (default: one per core); the result
        does not depend on it.
    df : ``"satterthwaite"`` (lmerTest's default) or ``"kenward-roger"``: SE from Kenward and
        Roger's adjusted covariance (also ``cov_beta``) and their df
        (:mod:`trialsim.analyse.kenward_roger`; pbkrtest's ``vcovAdj``).

    Returns
    -------
    RemlFit with ``.estimates`` (the batched record), ``.beta``, ``.cov_beta``,
    ``.reml_loglik``, variance components and ``.stats``. Replicates that cannot be fitted
    (rank-deficient X, fewer rows than columns) are ``failed`` with NaNs; nothing raises.

    Example
    -------
    >>> fit = fit_reml(y, X, group, mask, analysis="partially_nested")   # doctest: +SKIP
    >>> fit.estimates.to_frame()                                          # doctest: +SKIP

    References
    ----------
    Patterson & Thompson (1971) Biometrika 58:545 (REML); Kuznetsova et al. (2017) J Stat
    Softw 82(13) (lmerTest Satterthwaite df).
    """
    y, X, cluster, used = _broadcast_inputs(y, X, cluster, mask)
    coef = check_coef(coef, X.shape[-1])
    check_df_method(df)

    def fit_block(b: slice) -> tuple[ClusterStats, dict]:
        # statistics and fit in one go, while the block is still in cache
        stats = _block_stats(y[b], X if len(X) == 1 else X[b], cluster[b], used[b])
        return stats, _fit_block(stats, coef, df)

    parts = _map_blocks(fit_block, len(y), threads)
    stats = ClusterStats.concat([part[0] for part in parts])
    return _assemble([part[1] for part in parts], stats, analysis, level)


def fit_reml_masked(
    Xy: np.ndarray,
    cluster: np.ndarray,
    used: np.ndarray,
    *,
    coef: int = 1,
    analysis: str = "reml",
    level: float = 0.95,
    threads: int | None = None,
    df: str = "satterthwaite",
) -> RemlFit:
    """:func:`fit_reml` on a design already in the layout it works in (no copy of the rows).

    Parameters
    ----------
    Xy : (R, N, p + 1) ``[X, y]``, finite, and zero in every row outside ``used`` (as
        :func:`trialsim.analyse.prepare.ancova_arrays` builds ``ModelArrays.Xy``).
    cluster : (R, N) or (N,) int cluster ids as in :func:`fit_reml`.
    used : (R, N) bool rows used.
    coef, analysis, level, threads, df : as in :func:`fit_reml`; the result equals
        ``fit_reml(y, X, cluster, used, ...)`` for ``X, y`` the columns of ``Xy``.
    """
    Xy, used, coef, cluster = masked_inputs(Xy, used, coef, cluster)
    check_df_method(df)

    def fit_block(b: slice) -> tuple[ClusterStats, dict]:
        W = Xy[b]
        cross = np.matmul(W.transpose(0, 2, 1), W)
        if not np.isfinite(cross).all():
            raise ValueError("Xy has non-finite values; use fit_reml, which drops such rows")
        stats = _pooled_stats(W, cross, used[b], cluster[b])
        return stats, _fit_block(stats, coef, df)

    parts = _map_blocks(fit_block, len(Xy), threads)
    stats = ClusterStats.concat([part[0] for part in parts])
    return _assemble([part[1] for part in parts], stats, analysis, level)
