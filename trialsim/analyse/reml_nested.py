"""Batched REML for two nested random intercepts (groups within clusters), Satterthwaite df.

Model, for each replicate::

    y = X beta + u_cluster + v_group + e,
    u ~ N(0, sigma2 lam_c),  v ~ N(0, sigma2 lam_g),  e ~ N(0, sigma2),

where rows with group ``-1`` carry no ``v`` and rows with cluster ``-1`` no ``u``; every group
lies inside one cluster (lme4: ``y ~ X + (1 | cluster) + (0 + in_group | group)``). This is the
analysis of a cluster-randomised or stepped-wedge trial whose treated participants are also
treated in groups: the randomised municipality is the cluster, the treatment group is nested
in it, controls belong to no group.

How it is computed (no loop over replicates or people)
------------------------------------------------------
Within cluster ``m``, ``V_m / sigma2 = D_m + lam_c 11'`` with ``D_m = I + lam_g blockdiag(J)``
over its groups (identity for its ungrouped rows). ``D^-1`` is ``I - w_g J`` on group ``g``
(``w_g = lam_g / (1 + lam_g n_g)``), so ``D^-1 1 = 1 / (1 + lam_g n_g)`` there and, by
Sherman-Morrison, with ``W = [X, y]``, ``S = W'W`` and group sums ``z_g``::

    t_m    = sum_{g in m} n_g / (1 + lam_g n_g) + (ungrouped rows of m)
    zhat_m = sum_{g in m} z_g / (1 + lam_g n_g) + (sum of W over ungrouped rows of m)
    A      = W' V_lam^-1 W = S - sum_g w_g z_g z_g' - sum_m c_m zhat_m zhat_m',
             c_m = lam_c / (1 + lam_c t_m)
    log|V_lam| = sum_g log(1 + lam_g n_g) + sum_m log(1 + lam_c t_m).

Groups are pooled by size ``s`` (``T_s = sum z_g z_g'``, and per cluster the sums of ``z_g``
of each size), so ``A`` costs ``O(M S q + M q^2)`` per evaluation for ``M`` clusters and ``S``
distinct group sizes, whatever the number of rows. As in :mod:`trialsim.analyse.reml`, a
Cholesky factor of ``A`` gives the REML criterion profiled over beta and sigma2::

    d(lam_c, lam_g) = log|V_lam| + log|A_xx| + (n - p) log Q,   Q the GLS residual SS.

``d`` is minimised over the quadrant ``lam >= 0`` for every replicate at once: a common
9 x 9 grid (exact zeros on both axes; on the product grid the cluster outer products
``zhat_m zhat_m'`` depend on lam_g only and are combined with the weights ``c_m`` in one
matrix product), then projected Newton steps with analytic gradient and Hessian (Bertsekas
1982, SIAM J Control Optim 20:221): a coordinate at zero whose slope points outwards is held
there; the others take a Newton step (eigenvalues of an indefinite Hessian made positive),
projected onto the quadrant, with a backtracking (Armijo) search, and a scaled steepest-descent
step if that fails. Once the Newton decrement is below 1e-12 relative to ``d`` (or the step
below 1e-10 relative) the full step is taken and is the last: the criterion is then converged
to far better than 1e-9 relative (measured slopes at the optimum ~1e-13). A component ending
at exactly zero is a boundary fit (``boundary``), which never fails. ``lam_g`` is held at 0
when no group has two used members (a singleton group effect is not separable from the
residual), and ``lam_c`` when no cluster has two used rows; with ``lam_g`` held at 0 the fit
is the one-component :func:`trialsim.analyse.reml.fit_reml_masked` (such a held component
does not count as a boundary fit).

Blocks of replicates (sized so the grid arrays stay at a few MB) run on a few threads; a
replicate's fit uses only its own rows, so the result does not depend on the thread count.

Satterthwaite degrees of freedom
--------------------------------
As in lmerTest (Kuznetsova, Brockhoff & Christensen 2017, J Stat Softw 82(13), section 3;
Satterthwaite 1946): ``df = 2 f^2 / (g' Cov g)``, ``f = Var(beta_k)`` as a function of the
variance parameters, ``g`` its gradient, ``Cov = 2 H^-1`` with ``H`` the observed Hessian of
the REML deviance at the optimum. Here ``H`` and ``g`` are analytic in
``(lam_c, lam_g, sigma2)``; lmerTest differentiates numerically in ``(theta_c, theta_g,
sigma)``; at an interior optimum the deviance gradient is zero, so ``g' H^-1 g`` does not
depend on the parameterisation. A component at zero drops out of the parameter vector: the
deviance is even in its theta, so lmerTest's gradient and Hessian cross-terms for it vanish.
With both components at zero the df is ``n - p``, the fixed-effects model's.

References
----------
Patterson & Thompson (1971) Biometrika 58:545 (REML); Harville (1977) JASA 72:320;
Kuznetsova, Brockhoff & Christensen (2017) J Stat Softw 82(13); Bates et al. (2015) J Stat
Softw 67(1) (lme4's profiled REML criterion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.linalg import safe_cholesky
from trialsim.analyse.prepare import masked_inputs
from trialsim.analyse.reml import (
    ProfiledGrid,
    drop_aliased,
    effect_last,
    fit_record,
    joined_estimates,
    profiled_from_cross,
    profiled_gls,
    unfittable,
)
from trialsim.errors import UserError
from trialsim.parallel import map_in_threads

__all__ = [
    "NestedStats",
    "RemlNestedFit",
    "check_nesting",
    "fit_reml_nested",
    "nested_stats",
    "profiled_pairs",
    "split_groups_by_cluster",
]

# Common grid on each axis (0 exactly, then log-spaced, denser where ratios usually are).
_GRID = np.concatenate([[0.0], 10.0 ** np.array([-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 1.0, 2.0])])
_LAM_MAX = 1e8  # a ratio this large is a failed (not converged) fit
_STEP_RTOL = 1e-10
_MAX_NEWTON = 60
_ARMIJO = 1e-4
_BACKTRACK = 2.0 ** -np.arange(1, 31)
_BLOCK_CELLS = 4_000_000  # grid arrays of a block: replicates x grid x clusters x q^2


@dataclass(frozen=True)
class NestedStats:
    """Sufficient statistics of a block of replicates for the nested model.

    ``W = [X, y]`` has ``q = p + 1`` columns; ``S`` distinct group sizes, ``M`` cluster ids.

    Attributes
    ----------
    cross : (R, q, q) ``W'W`` over the rows used.
    sizes : (S,) distinct sizes of non-empty groups (1.0 when there are none).
    n_size : (R, S) groups of each size.
    cross_size : (R, S, q, q) sum of ``z_g z_g'`` over the groups of each size.
    cluster_sum : (R, M, S + 1, q) per cluster, sums of ``z_g`` over its groups of each size;
        last slot the sum of ``W`` over its ungrouped rows.
    cluster_rows : (R, M, S + 1) the matching row counts.
    n_obs : (R,) rows used.
    fix_group, fix_cluster : (R,) lam_g (lam_c) held at 0: no group (cluster) with two rows.
    """

    cross: np.ndarray
    sizes: np.ndarray
    n_size: np.ndarray
    cross_size: np.ndarray
    cluster_sum: np.ndarray
    cluster_rows: np.ndarray
    n_obs: np.ndarray
    fix_group: np.ndarray
    fix_cluster: np.ndarray


@dataclass(frozen=True)
class RemlNestedFit:
    """A batched nested REML fit (arrays with leading length R).

    Attributes
    ----------
    estimates : the :class:`Estimates` record for coefficient ``coef`` (variance components
        ``residual``, ``cluster``, ``group``).
    beta : (R, p) fixed effects; cov_beta : (R, p, p) ``sigma2 (X'V_lam^-1 X)^-1``.
    sigma2_residual, sigma2_cluster, sigma2_group : (R,) variance components.
    ratio_cluster, ratio_group : (R,) lam_c and lam_g.
    reml_loglik : (R,) maximised REML log-likelihood (lme4's ``-REMLcrit / 2``).
    """

    estimates: Estimates
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2_residual: np.ndarray
    sigma2_cluster: np.ndarray
    sigma2_group: np.ndarray
    ratio_cluster: np.ndarray
    ratio_group: np.ndarray
    reml_loglik: np.ndarray


# --------------------------------------------------------------------------- linear algebra


def _pool_outer(z: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
    """``sum z_i z_i'`` over the rows ``i`` of ``z`` in each cell: (n_cells, q, q)."""
    q = z.shape[-1]
    outer = (z[:, :, None] * z[:, None, :]).reshape(-1, q * q)
    pool = sparse.csr_matrix(
        (np.ones(cell.size), (cell, np.arange(cell.size))), shape=(n_cells, cell.size)
    )
    return np.asarray(pool @ outer).reshape(n_cells, q, q)


# --------------------------------------------------------------------------- statistics


def check_nesting(cluster: np.ndarray, group: np.ndarray) -> None:
    """Raise ValueError unless every group's rows share one cluster (in every replicate)."""
    cluster = np.asarray(cluster, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    cluster, group = np.broadcast_arrays(np.atleast_2d(cluster), np.atleast_2d(group))
    n_groups = int(group.max(initial=-1)) + 1
    if n_groups == 0:
        return
    grouped = group >= 0
    key = (np.arange(len(group))[:, None] * n_groups + group)[grouped]
    c = cluster[grouped]
    low = np.full(len(group) * n_groups, np.iinfo(np.int64).max)
    high = np.full(len(group) * n_groups, np.iinfo(np.int64).min)
    np.minimum.at(low, key, c)
    np.maximum.at(high, key, c)
    bad = np.flatnonzero((low < high) & (high > np.iinfo(np.int64).min))
    if bad.size:
        rep, g = divmod(int(bad[0]), n_groups)
        raise UserError(
            f"group {g} (replicate {rep}) spans clusters {low[bad[0]]} and {high[bad[0]]}; "
            f"the nested model needs every group inside one cluster ({bad.size} groups span "
            "several): relabel the groups per cluster or use a one-level model"
        )


def split_groups_by_cluster(cluster: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Group ids that make groups nested: a group's rows in different clusters become
    different groups (ids 0..G-1 per replicate, -1 kept). (R, N) arrays in and out.

    Used when groups were formed across randomised clusters (e.g. treatment groups that mix
    recruitment cohorts): the nested model then ignores the correlation between a group's
    parts in different clusters, but keeps the one within each part."""
    cluster, group = np.broadcast_arrays(
        np.atleast_2d(np.asarray(cluster, dtype=np.int64)),
        np.atleast_2d(np.asarray(group, dtype=np.int64)),
    )
    n_rep = group.shape[0]
    width = int(cluster.max(initial=-1)) + 2
    n_keys = (int(group.max(initial=-1)) + 1) * width
    grouped = group >= 0
    key = np.arange(n_rep)[:, None] * n_keys + group * width + cluster + 1
    values, inverse = np.unique(key[grouped], return_inverse=True)
    first = np.searchsorted(values, np.arange(n_rep) * n_keys)  # first label of each replicate
    out = np.full(group.shape, -1, dtype=np.int64)
    out[grouped] = inverse.ravel() - np.repeat(first, grouped.sum(axis=1))
    return out


def _block_stats(W, used, cluster, group) -> NestedStats:
    """:class:`NestedStats` of one block from ``W = [X, y]`` (zero outside ``used``)."""
    n_rep, n, q = W.shape
    cross = np.matmul(W.transpose(0, 2, 1), W)
    n_groups = int(group.max(initial=-1)) + 1
    n_clusters = max(int(cluster.max(initial=-1)) + 1, 1)
    rep = np.arange(n_rep)[:, None]
    grouped = used & (group >= 0)
    loose = used & (group < 0) & (cluster >= 0)  # ungrouped rows of a cluster
    n_cells = n_rep * (n_groups + n_clusters)
    key = np.where(
        grouped,
        rep * n_groups + group,
        np.where(loose, n_rep * n_groups + rep * n_clusters + cluster, n_cells),
    ).ravel()
    onehot = sparse.csr_matrix(
        (np.ones(key.size), (key, np.arange(key.size))), shape=(n_cells + 1, key.size)
    )
    sums = np.asarray(onehot @ W.reshape(-1, q))[:-1]
    counts = np.bincount(key, minlength=n_cells + 1)[:-1]
    # the cluster of each group (nesting was checked): the largest cluster id of its rows
    group_cluster = np.full(n_rep * n_groups, -1)
    np.maximum.at(group_cluster, key[grouped.ravel()], cluster[grouped])

    n_g = counts[: n_rep * n_groups]
    nonempty = n_g > 0
    z = sums[: n_rep * n_groups][nonempty]
    size_of = n_g[nonempty]
    sizes = np.unique(size_of).astype(float) if nonempty.any() else np.ones(1)
    n_sizes = sizes.size
    size_index = np.searchsorted(sizes, size_of)
    rep_of = np.repeat(np.arange(n_rep), n_groups)[nonempty]
    cell = rep_of * n_sizes + size_index
    n_size = np.bincount(cell, minlength=n_rep * n_sizes)
    cross_size = _pool_outer(z, cell, n_rep * n_sizes).reshape(n_rep, n_sizes, q, q)

    # per cluster: group sums by size (slots 0..S-1) and ungrouped rows (slot S)
    m_of = group_cluster[nonempty]
    in_cluster = m_of >= 0
    slot = (rep_of * n_clusters + m_of) * (n_sizes + 1) + size_index
    loose_cell = np.arange(n_rep * n_clusters) * (n_sizes + 1) + n_sizes
    cells = np.concatenate([slot[in_cluster], loose_cell])
    items = np.concatenate([z[in_cluster], sums[n_rep * n_groups :]])
    item_rows = np.concatenate([size_of[in_cluster], counts[n_rep * n_groups :]])
    n_slots = n_rep * n_clusters * (n_sizes + 1)
    cluster_sum = np.stack(
        [np.bincount(cells, weights=items[:, j], minlength=n_slots) for j in range(q)], axis=-1
    ).reshape(n_rep, n_clusters, n_sizes + 1, q)
    cluster_rows = np.bincount(cells, weights=item_rows, minlength=n_slots).reshape(
        n_rep, n_clusters, n_sizes + 1
    )
    n_size = n_size.reshape(n_rep, n_sizes).astype(float)
    return NestedStats(
        cross=cross,
        sizes=sizes,
        n_size=n_size,
        cross_size=cross_size,
        cluster_sum=cluster_sum,
        cluster_rows=cluster_rows,
        n_obs=used.sum(axis=1),
        fix_group=~(n_size[:, sizes >= 2].sum(axis=1) > 0),
        fix_cluster=~(cluster_rows.sum(axis=2) >= 2).any(axis=1),
    )


# --------------------------------------------------------------------------- criterion


def _pair_cross(st: NestedStats, S, lam_c, lam_g):
    """``A = W'V_lam^-1 W`` (R, K, q, q) and ``log|V_lam|`` (R, K) at lam pairs (R, K), for
    the columns of ``S`` and ``st`` as they are (formulas: module docstring)."""
    n_rep, q = S.shape[0], S.shape[-1]
    s = st.sizes
    a = 1.0 / (1.0 + lam_g[..., None] * s)  # (R, K, S)
    ext = np.concatenate([a, np.ones((*a.shape[:-1], 1))], axis=-1)  # (R, K, S + 1)
    zhat = np.matmul(ext[:, None], st.cluster_sum)  # (R, M, K, q)
    t = np.matmul(ext, st.cluster_rows.transpose(0, 2, 1))  # (R, K, M)
    c = lam_c[..., None] / (1.0 + lam_c[..., None] * t)
    zk = zhat.transpose(0, 2, 1, 3)  # (R, K, M, q)
    A = np.matmul((zk * c[..., None]).swapaxes(-1, -2), zk)
    w = lam_g[..., None] * a
    A += np.matmul(w, st.cross_size.reshape(n_rep, s.size, q * q)).reshape(A.shape)
    A = S[:, None] - A
    log_v = (st.n_size[:, None] * np.log1p(lam_g[..., None] * s)).sum(-1)
    log_v += np.log1p(lam_c[..., None] * t).sum(-1)
    return A, log_v


def _deviance(st: NestedStats, S, resid_df, lam_c, lam_g):
    """Profiled REML deviance (without constants) at lam pairs of shape (R, K)."""
    A, log_v = _pair_cross(st, S, lam_c, lam_g)
    L, ok = safe_cholesky(A)
    pivots = np.diagonal(L, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (
            log_v
            + 2.0 * np.log(pivots).sum(-1)
            + (resid_df[:, None] - 1.0) * 2.0 * np.log(pivots[..., -1])
        )
    return np.where(ok & np.isfinite(d), d, np.inf)


def nested_stats(
    Xy: np.ndarray, cluster: np.ndarray, group: np.ndarray, used: np.ndarray, *, coef: int = 1
) -> NestedStats:
    """:class:`NestedStats` of a batch (inputs as :func:`fit_reml_nested`) with column
    ``coef`` of X moved just before y, the layout :func:`profiled_pairs` reads."""
    Xy, used, coef, cluster, group = masked_inputs(Xy, used, coef, cluster, group)
    check_nesting(cluster, group)
    Xy = Xy[..., effect_last(Xy, coef)]
    if not np.isfinite(Xy).all():
        raise ValueError("Xy has non-finite values; drop those rows from `used` and zero them")
    return _block_stats(Xy, used, cluster, group)


def profiled_pairs(st: NestedStats, lam_c: np.ndarray, lam_g: np.ndarray) -> ProfiledGrid:
    """The profiled restricted likelihood at lam pairs ``(lam_c, lam_g)`` (K,) for every
    replicate of ``st`` (from :func:`nested_stats`): arrays (R, K) for the effect column.
    The one-term :func:`trialsim.analyse.reml.profiled_grid` is the case ``lam_c = 0`` (no
    cluster term) or ``lam_g = 0``."""
    n_rep = st.cross.shape[0]
    p = st.cross.shape[-1] - 1
    lc = np.broadcast_to(np.asarray(lam_c, dtype=float), (n_rep, np.size(lam_c)))
    lg = np.broadcast_to(np.asarray(lam_g, dtype=float), (n_rep, np.size(lam_g)))
    A, log_v = _pair_cross(st, st.cross, lc, lg)
    return profiled_from_cross(A, log_v, st.n_obs - p)


def _grid_deviance(st: NestedStats, S, resid_df, grid: np.ndarray):
    """Profiled REML deviance on the product grid ``lam_c x lam_g``: (R, K_c, K_g).

    The cluster outer products ``zhat_m zhat_m'`` depend on lam_g only, so they are formed
    once per lam_g and combined with the weights ``c_m(lam_c, lam_g)`` in one matrix product
    over clusters."""
    n_rep, q = S.shape[0], S.shape[-1]
    k = grid.size
    s = st.sizes
    a = 1.0 / (1.0 + grid[:, None] * s)  # (K_g, S)
    ext = np.concatenate([a, np.ones((k, 1))], axis=1)  # (K_g, S + 1)
    zhat = np.matmul(ext, st.cluster_sum)  # (R, M, K_g, q)
    t = np.matmul(st.cluster_rows, ext.T)  # (R, M, K_g)
    outer = zhat[..., :, None] * zhat[..., None, :]  # (R, M, K_g, q, q)
    outer = np.ascontiguousarray(outer.transpose(0, 2, 3, 4, 1)).reshape(n_rep, k, q * q, -1)
    ct = grid[:, None] * t[:, :, None, :]  # (R, M, K_c, K_g): lam_c t_m
    c = grid[:, None] / (1.0 + ct)
    weight = np.ascontiguousarray(c.transpose(0, 3, 1, 2))  # (R, K_g, M, K_c)
    cl = np.matmul(outer, weight).reshape(n_rep, k, q, q, k)  # (R, K_g, q, q, K_c)
    grp = np.matmul(grid[:, None] * a, st.cross_size.reshape(n_rep, s.size, q * q))
    A = S[:, None, None] - grp.reshape(n_rep, 1, k, q, q) - cl.transpose(0, 4, 1, 2, 3)
    log_v = (st.n_size @ np.log1p(grid[:, None] * s).T)[:, None, :]
    log_v = log_v + np.log1p(ct).sum(1)
    L, ok = safe_cholesky(A)
    pivots = np.diagonal(L, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = log_v + 2.0 * np.log(pivots).sum(-1)
        d += (resid_df[:, None, None] - 1.0) * 2.0 * np.log(pivots[..., -1])
    return np.where(ok & np.isfinite(d), d, np.inf)


def _sym(M):
    return M + M.swapaxes(-1, -2)


def _derivatives(st: NestedStats, S, resid_df, lam_c, lam_g):
    """Deviance, its gradient (R, 2) and Hessian (R, 2, 2) in (lam_c, lam_g), and the
    matrices the final step reuses. Formulas: module docstring, differentiated by hand."""
    n_rep, q = S.shape[0], S.shape[-1]
    s = st.sizes
    a = 1.0 / (1.0 + lam_g[:, None] * s)
    zero = np.zeros((n_rep, 1))
    ext = [
        np.concatenate([a, zero + 1.0], axis=1),
        np.concatenate([-s * a**2, zero], axis=1),
        np.concatenate([2.0 * s**2 * a**3, zero], axis=1),
    ]
    B = st.cluster_sum  # (R, M, S + 1, q)
    Nr = st.cluster_rows  # (R, M, S + 1)
    Z0, Z1, Z2 = (np.matmul(e[:, None, None], B)[:, :, 0] for e in ext)  # (R, M, q)
    t0, t1, t2 = ((Nr * e[:, None]).sum(-1) for e in ext)  # (R, M)
    lc = lam_c[:, None]
    e = 1.0 + lc * t0
    c = lc / e
    c_c = 1.0 / e**2
    c_cc = -2.0 * t0 / e**3
    c_g = -(lc**2) * t1 / e**2
    c_cg = -2.0 * lc * t1 / e**3
    c_gg = -(lc**2) * (t2 / e**2 - 2.0 * lc * t1**2 / e**3)

    def quad(weight, U, V):  # U' diag(weight) V, (R, q, q)
        return np.matmul((U * weight[..., None]).transpose(0, 2, 1), V)

    T = st.cross_size.reshape(n_rep, s.size, q * q)
    wT = np.matmul(np.stack([lam_g[:, None] * a, a**2, -2.0 * s * a**3], axis=1), T).reshape(
        n_rep, 3, q, q
    )
    A = S - wT[:, 0] - quad(c, Z0, Z0)
    dA = np.stack(
        [-quad(c_c, Z0, Z0), -wT[:, 1] - quad(c_g, Z0, Z0) - _sym(quad(c, Z1, Z0))], axis=1
    )
    d2A = np.stack(
        [
            -quad(c_cc, Z0, Z0),
            -quad(c_cg, Z0, Z0) - _sym(quad(c_c, Z1, Z0)),
            -wT[:, 2]
            - quad(c_gg, Z0, Z0)
            - 2.0 * _sym(quad(c_g, Z1, Z0))
            - _sym(quad(c, Z2, Z0))
            - 2.0 * quad(c, Z1, Z1),
        ],
        axis=1,
    )  # (cc, cg, gg)
    pairs = ((0, 0), (0, 1), (1, 1))

    # log|V_lam|
    G = st.n_size
    lv = (G * np.log1p(lam_g[:, None] * s)).sum(1) + np.log(e).sum(1)
    lv1 = np.stack([(t0 / e).sum(1), (G * s * a).sum(1) + (lc * t1 / e).sum(1)], axis=1)
    lv2 = np.stack(
        [
            -(t0**2 / e**2).sum(1),
            (t1 / e**2).sum(1),
            -(G * s**2 * a**2).sum(1) + (lc * (t2 / e - lc * t1**2 / e**2)).sum(1),
        ],
        axis=1,
    )
    # log|A|: tr(A^-1 A_i), tr(A^-1 A_ij) - tr(A^-1 A_i A^-1 A_j)
    Ai = np.linalg.inv(A)
    P = np.matmul(Ai[:, None], dA)  # (R, 2, q, q)
    la1 = (Ai[:, None] * dA).sum((-1, -2))
    la2 = (Ai[:, None] * d2A).sum((-1, -2)) - np.stack(
        [(P[:, i] * P[:, j].swapaxes(-1, -2)).sum((-1, -2)) for i, j in pairs], axis=1
    )
    # log Q = -log (A^-1)_yy; with a = A^-1 e_y: (A^-1)_yy,i = -a'A_i a and
    # (A^-1)_yy,ij = 2 (A_i a)' A^-1 (A_j a) - a'A_ij a
    av = Ai[:, :, -1]
    qy = av[:, -1]
    b = np.matmul(dA, av[:, None, :, None])[..., 0]  # (R, 2, q)
    Aib = np.matmul(Ai[:, None], b[..., None])[..., 0]
    qy1 = -(av[:, None] * b).sum(-1)
    a2a = (np.matmul(d2A, av[:, None, :, None])[..., 0] * av[:, None]).sum(-1)
    qy2 = np.stack([2.0 * (b[:, i] * Aib[:, j]).sum(-1) for i, j in pairs], axis=1) - a2a
    lq1 = -qy1 / qy[:, None]
    lq2 = -(
        qy2 / qy[:, None]
        - np.stack([qy1[:, i] * qy1[:, j] for i, j in pairs], 1) / qy[:, None] ** 2
    )
    nu = (resid_df - 1.0)[:, None]
    grad = lv1 + la1 + nu * lq1
    h2 = lv2 + la2 + nu * lq2
    hess = np.stack([h2[:, [0, 1]], h2[:, [1, 2]]], axis=1)
    parts = dict(A=A, Ai=Ai, dA=dA, lv=lv, lv2=lv2, la2=la2, lq1=lq1, lq2=lq2)
    return grad, hess, parts


# --------------------------------------------------------------------------- optimiser


def _newton_direction(grad, hess, free):
    """Newton step on the free coordinates (others 0), the Hessian's eigenvalues made
    positive where it is not positive definite."""
    H = np.where(free[:, :, None] & free[:, None, :], hess, np.eye(2))
    g = np.where(free, grad, 0.0)
    vals, vecs = np.linalg.eigh(np.where(np.isfinite(H), H, np.eye(2)))
    scale = np.maximum(np.abs(vals).max(-1, keepdims=True), 1e-300)
    vals = np.maximum(np.abs(vals), 1e-8 * scale)
    coef = (vecs * g[:, :, None]).sum(1) / vals
    step = -(vecs * coef[:, None, :]).sum(-1)
    return np.where(free, step, 0.0)


def _optimise(st: NestedStats, S, resid_df):
    """Minimise the profiled deviance over the quadrant for every replicate.

    Returns (lam (R, 2), converged (R,))."""
    n_rep = S.shape[0]
    fixed = np.stack([st.fix_cluster, st.fix_group], axis=1)
    lc, lg = (g.ravel() for g in np.meshgrid(_GRID, _GRID, indexing="ij"))
    pairs = np.stack([lc, lg], axis=1)
    dev = _grid_deviance(st, S, resid_df, _GRID).reshape(n_rep, -1)
    # pairs with a held coordinate away from 0 are not allowed
    allowed = ~((fixed[:, None, 0] & (lc > 0)) | (fixed[:, None, 1] & (lg > 0)))
    k = np.argmin(np.where(allowed, dev, np.inf), axis=1)
    lam = pairs[k].copy()
    d_cur = dev[np.arange(n_rep), k]

    converged = np.zeros(n_rep, dtype=bool)
    active = np.arange(n_rep)
    for _ in range(_MAX_NEWTON):
        if active.size == 0:
            break
        i = active
        sub = _take(st, i)
        grad, hess, _ = _derivatives(sub, S[i], resid_df[i], lam[i, 0], lam[i, 1])
        free = ~fixed[i] & ~((lam[i] == 0.0) & (grad >= 0.0))
        step = _newton_direction(grad, hess, free)
        # Newton decrement: the criterion is this close (quadratic model) to its minimum.
        # Below 1e-12 relative the full step is taken and is the last (the error left is of
        # the order of its square); d itself is only accurate to ~1e-13 relative.
        decrement = -(grad * step).sum(1)
        small = (np.abs(step) <= _STEP_RTOL * lam[i] + 1e-14).all(axis=1)
        done = small | (decrement <= 1e-12 * np.maximum(np.abs(d_cur[i]), 1.0))
        done |= ~free.any(axis=1)
        lam[i[done]] = np.clip(lam[i[done]] + step[done], 0.0, _LAM_MAX)
        go = np.flatnonzero(~done)
        sub, g, st_go = _take(sub, go), grad[go], step[go]
        r = i[go]
        new, d_new, ok = _line_search(sub, S[r], resid_df[r], lam[r], d_cur[r], g, st_go)
        retry = np.flatnonzero(~ok)
        if retry.size:  # Newton failed (e.g. projection at a corner): scaled steepest descent
            curv = np.abs(np.diagonal(hess[go[retry]], axis1=1, axis2=2))
            descent = np.where(free[go[retry]], -g[retry] / np.maximum(curv, 1e-12), 0.0)
            rr = r[retry]
            new_r, d_r, ok_r = _line_search(
                _take(sub, retry), S[rr], resid_df[rr], lam[rr], d_cur[rr], g[retry], descent
            )
            new[retry], d_new[retry], ok[retry] = new_r, d_r, ok_r
        lam[r[ok]] = new[ok]
        d_cur[r[ok]] = d_new[ok]
        converged[i[done]] = True
        active = r[ok]
    converged &= (lam < _LAM_MAX).all(axis=1)
    return lam, converged


def _take(st: NestedStats, i) -> NestedStats:
    return NestedStats(
        cross=st.cross[i],
        sizes=st.sizes,
        n_size=st.n_size[i],
        cross_size=st.cross_size[i],
        cluster_sum=st.cluster_sum[i],
        cluster_rows=st.cluster_rows[i],
        n_obs=st.n_obs[i],
        fix_group=st.fix_group[i],
        fix_cluster=st.fix_cluster[i],
    )


def _line_search(st, S, resid_df, lam, d_cur, grad, step):
    """Projected backtracking: the first of t = 1, 1/2, ... meeting Armijo's condition.

    Returns (new lam, its deviance, found)."""
    new = np.clip(lam + step, 0.0, _LAM_MAX)
    d_new = _deviance(st, S, resid_df, new[:, :1], new[:, 1:])[:, 0]
    ok = d_new <= d_cur + _ARMIJO * (grad * (new - lam)).sum(1)
    retry = np.flatnonzero(~ok)
    if retry.size:
        t = _BACKTRACK
        trial = np.clip(lam[retry, None] + t[:, None] * step[retry, None], 0.0, _LAM_MAX)
        d_t = _deviance(_take(st, retry), S[retry], resid_df[retry], trial[..., 0], trial[..., 1])
        decrease = (grad[retry, None] * (trial - lam[retry, None])).sum(-1)
        good = d_t <= d_cur[retry, None] + _ARMIJO * decrease
        first = np.argmax(good, axis=1)
        found = good[np.arange(retry.size), first]
        new[retry] = np.where(found[:, None], trial[np.arange(retry.size), first], lam[retry])
        d_new[retry] = np.where(found, d_t[np.arange(retry.size), first], d_cur[retry])
        ok[retry] = found
    return new, d_new, ok


# --------------------------------------------------------------------------- fit


def _fit_block(st: NestedStats, coef: int) -> dict[str, np.ndarray]:
    """Fit one block of replicates; the arrays of a :class:`RemlNestedFit` (NaN if failed)."""
    S = st.cross
    n_rep, q = S.shape[0], S.shape[-1]
    p = q - 1
    failed, resid_df, S, aliased = unfittable(S, st.n_obs, coef)
    if failed.any():  # neutral inputs for the failed replicates (results are NaN)
        f = failed
        S = np.where(f[:, None, None], np.eye(q), S)
        st = NestedStats(
            cross=S,
            sizes=st.sizes,
            n_size=np.where(f[:, None], 0.0, st.n_size),
            cross_size=np.where(f[:, None, None, None], 0.0, st.cross_size),
            cluster_sum=np.where(f[:, None, None, None], 0.0, st.cluster_sum),
            cluster_rows=np.where(f[:, None, None], 0.0, st.cluster_rows),
            n_obs=st.n_obs,
            fix_group=st.fix_group | f,
            fix_cluster=st.fix_cluster | f,
        )
        resid_df = np.where(f, 1.0, resid_df)

    lam, converged = _optimise(st, S, resid_df)
    grad, hess, part = _derivatives(st, S, resid_df, lam[:, 0], lam[:, 1])
    A, Ai = part["A"], part["Ai"]
    L, _ = safe_cholesky(A[:, :p, :p])
    log_det_xx = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    Q, beta, C, s2, reml_loglik = profiled_gls(Ai, resid_df, part["lv"], log_det_xx)
    cov_beta = s2[:, None, None] * C
    var_k = cov_beta[:, coef, coef]
    beta, cov_beta = drop_aliased(beta, cov_beta, aliased)

    # Satterthwaite in (lam_c, lam_g, s2): D = (n-p) log s2 + h(lam) + Q(lam)/s2 with
    # h = log|V_lam| + log|A_xx| = log|V_lam| + log|A| - log Q
    lq1, lq2 = part["lq1"], part["lq2"]
    h2 = part["lv2"] + part["la2"] - lq2
    Q2 = Q[:, None] * (lq2 + np.stack([lq1[:, 0] ** 2, lq1[:, 0] * lq1[:, 1], lq1[:, 1] ** 2], 1))
    H_ll = h2 + Q2 / s2[:, None]
    H = np.empty((n_rep, 3, 3))
    H[:, 0, 0], H[:, 0, 1], H[:, 1, 1] = H_ll[:, 0], H_ll[:, 1], H_ll[:, 2]
    H[:, 1, 0] = H[:, 0, 1]
    H[:, :2, 2] = H[:, 2, :2] = -(Q[:, None] * lq1) / s2[:, None] ** 2
    H[:, 2, 2] = -resid_df / s2**2 + 2.0 * Q / s2**3
    v = C[:, :, coef]
    dA_xx = part["dA"][:, :, :p, :p]
    f_lam = -s2[:, None] * (np.matmul(dA_xx, v[:, None, :, None])[..., 0] * v[:, None]).sum(-1)
    f_grad = np.concatenate([f_lam, C[:, coef, coef, None]], axis=1)
    boundary = lam == 0.0
    keep = np.concatenate([~boundary, np.ones((n_rep, 1), dtype=bool)], axis=1)
    H = np.where(keep[:, :, None] & keep[:, None, :], H, np.eye(3))
    f_grad = np.where(keep, f_grad, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        solved = np.linalg.solve(np.where(np.isfinite(H), H, np.eye(3)), f_grad[..., None])
        quad = (f_grad * solved[..., 0]).sum(-1)
        # with both components at zero this is n - p up to rounding: return it exactly
        df = np.where(boundary.all(axis=1), resid_df, var_k**2 / quad)
    bad_df = ~(np.isfinite(df) & (df > 0.0))
    converged &= ~bad_df

    return fit_record(
        failed,
        beta=beta,
        cov_beta=cov_beta,
        coef=coef,
        var_k=var_k,
        df=df,
        bad_df=bad_df,
        # a component held at 0 (not estimable) is not a boundary estimate
        boundary=(boundary & ~np.stack([st.fix_cluster, st.fix_group], 1)).any(1),
        converged=converged,
        sigma2_residual=s2,
        sigma2_cluster=lam[:, 0] * s2,
        sigma2_group=lam[:, 1] * s2,
        ratio_cluster=lam[:, 0],
        ratio_group=lam[:, 1],
        reml_loglik=reml_loglik,
    )


def fit_reml_nested(
    Xy: np.ndarray,
    cluster: np.ndarray,
    group: np.ndarray,
    used: np.ndarray,
    *,
    coef: int = 1,
    analysis: str = "reml-nested",
    level: float = 0.95,
    threads: int | None = None,
) -> RemlNestedFit:
    """Fit ``y = X beta + u_cluster + v_group + e`` by REML for every replicate of a batch.

    Parameters
    ----------
    Xy : (R, N, p + 1) ``[X, y]``, finite, zero in every row outside ``used`` (the layout of
        ``ModelArrays.Xy``, as :func:`trialsim.analyse.reml.fit_reml_masked` takes).
    cluster : (R, N) or (N,) int cluster ids 0..M-1 (e.g. municipality); -1: no cluster effect.
    group : (R, N) or (N,) int group ids 0..G-1, unique across clusters; -1: no group effect
        (e.g. controls). Every group must lie inside one cluster.
    used : (R, N) bool rows used.
    coef : column of X whose coefficient is reported.
    analysis : name carried by the returned :class:`Estimates`.
    level : confidence level of the t interval (Satterthwaite df).
    threads : blocks of replicates fitted in parallel (default: one per core); the result
        does not depend on it.

    Returns
    -------
    RemlNestedFit; replicates that cannot be fitted (rank-deficient X, too few rows) are
    ``failed`` with NaNs. Raises ValueError if a group spans two clusters.

    Example
    -------
    >>> a = ancova_arrays(data, "psp")                                   # doctest: +SKIP
    >>> fit_reml_nested(a.Xy, a.cluster, a.group, a.mask).estimates      # doctest: +SKIP
    """
    Xy, used, coef, cluster, group = masked_inputs(Xy, used, coef, cluster, group)
    n_rep, q = Xy.shape[0], Xy.shape[-1]
    check_nesting(cluster, group)
    n_clusters = max(int(cluster.max(initial=-1)) + 1, 1)
    block = _GRID.size * n_clusters * max(q * q, _GRID.size)
    block = int(np.clip(_BLOCK_CELLS // block, 8, 256))

    def fit(b: slice) -> dict:
        W = Xy[b]
        if not np.isfinite(W).all():
            raise ValueError("Xy has non-finite values; drop those rows from `used` and zero them")
        return _fit_block(_block_stats(W, used[b], cluster[b], group[b]), coef)

    blocks = [slice(a, min(a + block, n_rep)) for a in range(0, n_rep, block)]
    parts = list(map_in_threads(fit, blocks, threads))
    res, estimates = joined_estimates(parts, analysis, level)
    return RemlNestedFit(
        estimates=estimates,
        **{
            key: res[key]
            for key in (
                "beta",
                "cov_beta",
                "sigma2_residual",
                "sigma2_cluster",
                "sigma2_group",
                "ratio_cluster",
                "ratio_group",
                "reml_loglik",
            )
        },
    )
