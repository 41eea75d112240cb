"""Kenward-Roger small-sample inference for random-intercept models, batched over replicates.

Model ``V = sum_k tau_k Z_k Z_k' + sigma2 I``: the variance parameters ``theta = (tau_1 ..
tau_K, sigma2)`` enter linearly, so ``G_j = dV/dtheta_j`` is ``Z_j Z_j'`` (``I`` for the
residual) and every second derivative of ``V`` vanishes. Kenward & Roger (1997) then give,
with ``Phi = (X'V^-1 X)^-1`` (pbkrtest's ``vcovAdj``, Halekoh & Hojsgaard 2014)::

    P_i  = -X'V^-1 G_i V^-1 X,         Q_ij = X'V^-1 G_i V^-1 G_j V^-1 X,
    W    = 2 I_E^-1,  (I_E)_ij = tr(P G_i P G_j)  (P the REML projection),
    Phi_A = Phi + 2 Phi [sum_ij W_ij (Q_ij - P_i Phi P_j)] Phi,

and, for one coefficient ``k`` (one row ``L``; the F scaling is then exactly 1)::

    df = 2 Phi_kk^2 / sum_ij W_ij (Phi P_i Phi)_kk (Phi P_j Phi)_kk,

Satterthwaite's formula with the expected (not the observed) information. SE: ``sqrt
(Phi_A)_kk``.

Everything is computed in the space of the random-effect levels, from what the REML fit
already has (``V_lam = V / sigma2``, ``C = (X'V_lam^-1 X)^-1``, ``B = Z'V_lam^-1 X``,
``Z'V_lam^-1 Z`` and ``H = Z'P_lam Z``), never an N x N matrix: with ``I = V_lam - sum_k lam_k
Z_k Z_k'``, ``X'V_lam^-2 X = C^-1 - sum_k lam_k B_k'B_k``, ``Z'V_lam^-2 X = B - sum_k lam_k
(Z'V_lam^-1 Z_k) B_k`` and ``P_lam^2 = P_lam - sum_k lam_k P_lam Z_k Z_k' P_lam``.

References
----------
Kenward & Roger (1997) Biometrics 53:983-997; Halekoh & Hojsgaard (2014) J Stat Softw 59(9)
(pbkrtest); Kuznetsova, Brockhoff & Christensen (2017) J Stat Softw 82(13) (lmerTest's
``ddf = "Kenward-Roger"``: these SEs and df).
"""

from __future__ import annotations

import numpy as np

DF_METHODS = ("satterthwaite", "kenward-roger")


def check_df_method(df: str) -> str:
    """``df`` if it names a small-sample method, else ValueError naming the choices."""
    if df not in DF_METHODS:
        raise ValueError(f"df method {df!r}: choose one of {', '.join(DF_METHODS)}")
    return df


def kenward_roger_levels(lam, held, C, Bx, ZVZ, H, E, resid_df, coef):
    """Kenward-Roger for a batch, from the level-space matrices of a REML fit.

    Parameters
    ----------
    lam : (R, K) variance ratios ``tau_k / sigma2``; held : (R, K) terms not in the model
        (dropped from the variance parameters).
    C : (R, p, p) ``(X'V_lam^-1 X)^-1``; Bx : (R, Q, p) ``Z'V_lam^-1 X``;
    ZVZ : (R, Q, Q) ``Z'V_lam^-1 Z``; H : (R, Q, Q) ``Z'P_lam Z``; E : (Q, K) level -> term.
    resid_df : (R,) ``n - p`` (``tr(P_lam V_lam)``); coef : the coefficient's column.

    Returns
    -------
    ``(scale, df)``: ``Phi_A / sigma2`` (R, p, p), so that the adjusted covariance is
    ``sigma2 * scale``, and the Kenward-Roger df of ``beta_coef`` (R,).
    """
    n_rep, K = lam.shape
    p = C.shape[-1]
    DB = Bx[:, None] * E.T[None, :, :, None]  # (R, K, Q, p): B restricted to term k's levels
    DBt = DB.transpose(0, 1, 3, 2)
    p_rand = np.matmul(DBt, Bx[:, None])  # (R, K, p, p) X'V^-1 G_k V^-1 X (sigma2 units)
    xvx = np.linalg.inv(C)
    lam4 = lam[:, :, None, None]
    p_res = xvx - (lam4 * p_rand).sum(axis=1)  # X'V^-2 X
    T = np.matmul(ZVZ[:, None], DB)  # (R, K, Q, p): Z'V^-1 Z_k B_k
    q_rand = np.matmul(DBt[:, :, None], T[:, None])  # (R, K, K, p, p)
    Y = Bx - (lam4 * T).sum(axis=1)  # Z'V^-2 X
    q_res_k = np.matmul(Y.transpose(0, 2, 1)[:, None], DB)  # (R, K, p, p): X'V^-2 G_k V^-1 X
    q_res = p_res - (lam4 * q_res_k).sum(axis=1)  # X'V^-3 X

    m = K + 1  # random terms, then the residual
    pp = np.empty((n_rep, m, p, p))
    pp[:, :K], pp[:, K] = p_rand, p_res
    qq = np.empty((n_rep, m, m, p, p))
    qq[:, :K, :K] = q_rand
    qq[:, K, :K] = q_res_k
    qq[:, :K, K] = q_res_k.transpose(0, 1, 3, 2)
    qq[:, K, K] = q_res

    e = np.empty((n_rep, m, m))  # tr(P G_i P G_j) in sigma2 units
    e[:, :K, :K] = np.matmul(np.matmul(E.T[None], H * H), E[None])
    tr = np.diagonal(H, axis1=1, axis2=2) @ E  # (R, K)
    e[:, K, :K] = tr - (lam[:, :, None] * e[:, :K, :K]).sum(axis=1)
    e[:, :K, K] = e[:, K, :K]
    trace_p = resid_df - (lam * tr).sum(axis=1)
    e[:, K, K] = trace_p - (lam * e[:, K, :K]).sum(axis=1)

    keep = np.concatenate([~held, np.ones((n_rep, 1), dtype=bool)], axis=1)
    return _adjusted(pp, qq, e, keep, C, coef)


def kenward_roger_pooled(lam, C, T, n_size, sizes, resid_df, coef):
    """Kenward-Roger for one random-intercept term from cluster sums pooled by size.

    ``lam`` (R,), ``C`` (R, p, p) as in :func:`kenward_roger_levels`; ``T`` (R, S, p, p) the
    sum over the clusters of each size ``sizes`` (S,) of ``z_c z_c'`` (``z_c`` the cluster
    sum of X); ``n_size`` (R, S) clusters of each size. With ``w = 1 / (1 + lam s)`` a
    cluster's level rows are ``Z_c'V^-1 X = w z_c'``, ``Z_c'V^-1 Z_c = s w`` (no two
    clusters share rows), so every term of :func:`kenward_roger_levels` is a sum over sizes.
    Returns ``(scale, df)`` as that function does."""
    n_rep, p = C.shape[0], C.shape[-1]
    w = 1.0 / (1.0 + lam[:, None] * sizes)  # (R, S)

    def pooled(f):
        return (f[:, :, None, None] * T).sum(axis=1)

    p1 = pooled(w**2)
    p0 = np.linalg.inv(C) - lam[:, None, None] * p1
    q11 = pooled(sizes * w**3)
    q01 = pooled(w**3)
    pp = np.stack([p1, p0], axis=1)
    qq = np.empty((n_rep, 2, 2, p, p))
    qq[:, 0, 0], qq[:, 1, 0], qq[:, 0, 1] = q11, q01, q01.transpose(0, 2, 1)
    qq[:, 1, 1] = p0 - lam[:, None, None] * q01
    cp1 = np.matmul(C, p1)
    e11 = (
        (n_size * (sizes * w) ** 2).sum(axis=1)
        - 2.0 * np.trace(np.matmul(C, q11), axis1=1, axis2=2)
        + (cp1 * cp1.transpose(0, 2, 1)).sum(axis=(1, 2))
    )
    tr = (n_size * sizes * w).sum(axis=1) - np.trace(cp1, axis1=1, axis2=2)
    e01 = tr - lam * e11
    e = np.empty((n_rep, 2, 2))
    e[:, 0, 0], e[:, 0, 1], e[:, 1, 0] = e11, e01, e01
    e[:, 1, 1] = resid_df - lam * tr - lam * e01
    keep = np.stack([(n_size * (sizes > 1)).sum(axis=1) > 0, np.ones(n_rep, dtype=bool)], axis=1)
    return _adjusted(pp, qq, e, keep, C, coef)


def _adjusted(pp, qq, e, keep, C, coef):
    """``(Phi_A / sigma2, df)`` from ``P_i`` (pp, R x m x p x p, sign dropped), ``Q_ij`` (qq),
    ``I_E`` (e) and the parameters in the model (keep, R x m), all in sigma2 units."""
    m = e.shape[-1]
    both = keep[:, :, None] & keep[:, None, :]
    e = np.where(both, e, np.where(np.eye(m, dtype=bool), 1.0, 0.0))
    pp = np.where(keep[:, :, None, None], pp, 0.0)
    qq = np.where(both[..., None, None], qq, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        try:
            ei = np.linalg.inv(e)  # W = 2 sigma2^2 ei
        except np.linalg.LinAlgError:
            ei = np.full_like(e, np.nan)
    pcp = np.matmul(np.matmul(pp[:, :, None], C[:, None, None]), pp[:, None, :])
    S = (ei[..., None, None] * (qq - pcp)).sum(axis=(1, 2))
    scale = C + 4.0 * np.matmul(np.matmul(C, S), C)
    c = C[:, :, coef]
    g = (np.matmul(pp, c[:, None, :, None])[..., 0] * c[:, None, :]).sum(axis=-1)  # c'p_i c
    with np.errstate(divide="ignore", invalid="ignore"):
        df = C[:, coef, coef] ** 2 / (g * np.matmul(ei, g[:, :, None])[..., 0]).sum(axis=1)
    return scale, df
