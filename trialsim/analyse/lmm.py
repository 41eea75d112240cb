"""Batched REML (or ML) for a linear mixed model with any number of random-intercept terms.

Model, for each replicate::

    y = X beta + sum_k Z_k u_k + e,   u_k ~ N(0, sigma2 lam_k I),   e ~ N(0, sigma2 I),

where term ``k`` is a partition of the rows given by integer ids (``-1``: the row is not in
the term). Terms may be nested (groups within clusters) or crossed (groups and trainers).
An arm-specific variance, lme4 ``(0 + armA | group) + (0 + armB | group)``, is two terms:
the group ids of arm A's rows (``-1`` elsewhere) and those of arm B's rows.

How it is computed
------------------
With ``Z = [Z_1 .. Z_K]`` (``Q`` levels in all), ``G = Z'Z``, ``W = [X, y]`` and
``s = sqrt(lam)`` per level (lme4's theta), ``M = I + s G s`` (eigenvalues >= 1, so it never
fails) and Woodbury give, without any N x N matrix::

    V / sigma2 = I + Z diag(lam) Z',   log|V / sigma2| = log|M|,
    A = W'V^-1 W = W'W - (sZ'W)' M^-1 (sZ'W),
    Z'V^-1 W = Z'W - G s M^-1 s Z'W,   Z'V^-1 Z = G - G s M^-1 s G.

``A`` yields the GLS coefficients, ``log|X'V^-1X|`` and the GLS residual sum of squares
``Q`` (``1 / (A^-1)_yy``); the criterion profiled over beta and sigma2 is::

    d(lam) = log|M| + log|X'V^-1 X| + (n - p) log Q     (REML)
    d(lam) = log|M| + n log Q                            (ML)

With ``P = V^-1 - V^-1 X (X'V^-1X)^-1 X'V^-1``, ``H = Z'PZ`` and ``u = Z'P y`` its gradient
and Hessian are analytic (``tr_k`` and ``||.||_kl`` sums over the levels of terms ``k``,
``l``; ``H_tr = H`` for REML, ``Z'V^-1 Z`` for ML; ``nu = n - p`` or ``n``)::

    d_k  = tr_k(H_tr) - nu |u_k|^2 / Q
    d_kl = -||H_tr||_kl^2 + nu (2 u_k' H_kl u_l / Q - |u_k|^2 |u_l|^2 / Q^2).

``d`` is minimised over ``lam >= 0`` for every replicate of a block at once: the best of a
few starting points (common ratios, one term at a time), then projected Newton steps
(Bertsekas 1982, SIAM J Control Optim 20:221): a ratio at zero whose slope points outwards
is held there, the others take a Newton step (an indefinite Hessian's eigenvalues made
positive) projected onto the orthant, with Armijo backtracking. The iteration stops after a
full step below 1e-10 (relative): the criterion is then converged to ~1e-14 relative. A ratio
at exactly zero is a boundary fit (``boundary``), which never fails. A term none of whose
levels has two used rows is held at zero (not separable from the residual; not a boundary).
``Z'Z`` and ``Z'W`` are summed by a compiled pass over the rows; everything else is batched
numpy over a block of replicates (blocks on a few threads; results do not depend on them).

Satterthwaite degrees of freedom
--------------------------------
As lmerTest (Kuznetsova, Brockhoff & Christensen 2017, J Stat Softw 82(13)):
``df = 2 f^2 / (g' Cov g)``, ``f = Var(beta_coef)``, ``g`` its gradient in the variance
parameters, ``Cov = 2 H^-1`` from the observed Hessian of the deviance (REML or ML, as
fitted), all analytic in ``(lam_1..lam_K, sigma2)``; at an interior optimum ``g' H^-1 g``
does not depend on the parameterisation, so this equals lmerTest's (which differentiates
numerically in (theta, sigma)) up to its numerical-derivative error. Ratios at zero drop
out (lmerTest's deviance is even in theta there).

Kenward-Roger
-------------
With ``df="kenward-roger"`` (REML only) the SE comes from Kenward and Roger's adjusted
covariance and the df are theirs, from the same level-space matrices at the optimum
(:mod:`trialsim.analyse.kenward_roger`; equal to pbkrtest's ``vcovAdj`` and ``get_Lb_ddf``).
Every term not held is a variance parameter, also one estimated at zero (as pbkrtest).

References
----------
Bates, Maechler, Bolker & Walker (2015) J Stat Softw 67(1) (profiled criterion); Patterson &
Thompson (1971) Biometrika 58:545; Kuznetsova et al. (2017) J Stat Softw 82(13).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numba
import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.kenward_roger import check_df_method, kenward_roger_levels
from trialsim.analyse.linalg import safe_cholesky
from trialsim.analyse.prepare import masked_inputs
from trialsim.analyse.reml import (
    drop_aliased,
    fit_record,
    joined_estimates,
    profiled_gls,
    unfittable,
)
from trialsim.errors import UserError
from trialsim.parallel import map_in_threads

__all__ = ["LmmFit", "fit_lmm"]

_STARTS = (0.0, 0.01, 0.05, 0.2, 1.0, 5.0)  # common ratio for every term
_SINGLE = (0.03, 0.3, 3.0)  # one term at a time, the others at 0
_STEP_RTOL = 1e-10
_MAX_NEWTON = 100
_ARMIJO = 1e-4
_LAM_MAX = 1e8  # a ratio this large is a failed (not converged) fit
_BLOCK_CELLS = 2_000_000  # replicates x levels^2 of a block


@dataclass(frozen=True)
class LmmFit:
    """A batched fit (arrays with leading length R).

    Attributes
    ----------
    estimates : the :class:`Estimates` record for coefficient ``coef``; variance components
        ``residual`` and one per term, by the term's name.
    beta : (R, p) fixed effects; cov_beta : (R, p, p) ``sigma2 (X'V^-1 X)^-1``.
    sigma2_residual : (R,); variance : name -> (R,) term variances ``sigma2 lam_k``.
    ratio : (R, K) ``lam_k``; held : (R, K) terms held at 0 (no level with two rows).
    loglik : (R,) maximised REML (ML) log-likelihood: lme4's ``-REMLcrit / 2``
        (``logLik``).
    reml : True for REML, False for ML.
    """

    estimates: Estimates
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2_residual: np.ndarray
    variance: dict[str, np.ndarray]
    ratio: np.ndarray
    held: np.ndarray
    loglik: np.ndarray
    reml: bool


# --------------------------------------------------------------------------- statistics


@numba.njit(nogil=True, cache=True)
def _compact_levels(ids, used, offsets, n_levels, out):
    """``out[r, i, k]`` = the level of row i in term k numbered 0.. in order of appearance
    within replicate r (over used rows), plus ``offsets[k]``; -1 where not in the term.
    ``n_levels[r, k]`` = levels of term k in replicate r."""
    n_rep, n, n_terms = ids.shape
    big = 0
    for r in range(n_rep):
        for i in range(n):
            for k in range(n_terms):
                big = max(big, ids[r, i, k] + 1)
    seen = np.full(big, -1, dtype=np.int64)
    for k in range(n_terms):
        for r in range(n_rep):
            for i in range(n):
                g = ids[r, i, k]
                if g >= 0 and used[r, i]:
                    if seen[g] < 0:
                        seen[g] = n_levels[r, k]
                        n_levels[r, k] += 1
                    out[r, i, k] = seen[g] + offsets[k]
                else:
                    out[r, i, k] = -1
            for i in range(n):  # reset only what was set
                g = ids[r, i, k]
                if g >= 0:
                    seen[g] = -1


@numba.njit(nogil=True, cache=True)
def _level_cross(W, used, level, G, ZW):
    """Add ``Z'Z`` to ``G`` (R, Q, Q) and ``Z'W`` to ``ZW`` (R, Q, q) over the used rows."""
    n_rep, n, q = W.shape
    n_terms = level.shape[2]
    for r in range(n_rep):
        for i in range(n):
            if not used[r, i]:
                continue
            for a in range(n_terms):
                la = level[r, i, a]
                if la < 0:
                    continue
                for j in range(q):
                    ZW[r, la, j] += W[r, i, j]
                for b in range(n_terms):
                    lb = level[r, i, b]
                    if lb >= 0:
                        G[r, la, lb] += 1.0


def _block_stats(W, used, ids):
    """``(WW, G, ZW, E, held, n_obs)`` for a block: ``W'W``, ``Z'Z``, ``Z'W`` (levels of
    every term compacted per replicate, term k's levels after term k-1's), ``E`` (Q, K) the
    level -> term indicator and ``held`` (R, K) terms with no level of two used rows."""
    n_rep, n, q = W.shape
    K = ids.shape[-1]
    WW = np.matmul(W.transpose(0, 2, 1), W)
    n_levels = np.zeros((n_rep, K), dtype=np.int64)
    level = np.empty((n_rep, n, K), dtype=np.int64)
    _compact_levels(ids, used, np.zeros(K, dtype=np.int64), n_levels, level)
    width = np.maximum(n_levels.max(axis=0), 1)
    offsets = np.concatenate([[0], np.cumsum(width)[:-1]])
    level = np.where(level >= 0, level + offsets, -1)
    Q = int(width.sum())
    G = np.zeros((n_rep, Q, Q))
    ZW = np.zeros((n_rep, Q, q))
    _level_cross(W, used, level, G, ZW)
    term_of = np.repeat(np.arange(K), width)
    E = (term_of[:, None] == np.arange(K)).astype(float)
    counts = np.diagonal(G, axis1=1, axis2=2)
    held = (np.where(counts >= 2.0, 1.0, 0.0) @ E) == 0.0
    return WW, G, ZW, E, held, used.sum(axis=1)


# --------------------------------------------------------------------------- criterion


@dataclass
class _Eval:
    d: np.ndarray  # (R,) profiled criterion
    log_m: np.ndarray
    log_xx: np.ndarray
    Ai: np.ndarray | None  # (R, q, q) A^-1 (with derivatives only)
    Q: np.ndarray
    grad: np.ndarray | None = None  # (R, K)
    hess_d: np.ndarray | None = None  # (R, K, K) Hessian of d
    h2: np.ndarray | None = None  # (R, K, K) Hessian of log|M| (+ log|X'V^-1X|)
    q1: np.ndarray | None = None  # (R, K) dQ/dlam
    q2: np.ndarray | None = None  # (R, K, K)
    Bx: np.ndarray | None = None  # (R, Q, p) Z'V^-1 X


@numba.njit(nogil=True, cache=True)
def _lower_inverse(L, Q):
    """The inverse of the leading ``Q x Q`` block of each lower-triangular ``L`` (R, m, m)."""
    n_rep = L.shape[0]
    out = np.zeros((n_rep, Q, Q))
    for r in range(n_rep):
        for j in range(Q):
            out[r, j, j] = 1.0 / L[r, j, j]
            for i in range(j + 1, Q):
                acc = 0.0
                for k in range(j, i):
                    acc -= L[r, i, k] * out[r, k, j]
                out[r, i, j] = acc / L[r, i, i]
    return out


_SMALL = 1e-4  # ratios below this use the direct (not the s-scaled) formulas


def _evaluate(lam, WW, G, ZW, E, nu, reml, derivs, levels=False):
    """The profiled criterion at ``lam`` (R, K) and, if ``derivs``, its derivatives; with
    ``levels`` also ``(Z'V^-1 Z, Z'P Z)`` (returned as ``(ev, (ZVZ, H))``).

    One Cholesky factor of ``[[M, sZ'W], [W'Zs, W'W]]`` gives ``log|M|`` (first Q pivots),
    and, as its trailing block is the factor of the Schur complement ``A``, ``log|X'V^-1X|``
    and ``Q`` (the last pivot squared). A replicate whose ``A`` is not positive definite
    gets ``d = inf``."""
    n_rep, Q, _ = G.shape
    q = WW.shape[-1]
    p = q - 1
    s = np.sqrt(lam) @ E.T  # (R, Q)
    sZW = s[:, :, None] * ZW
    aug = np.empty((n_rep, Q + q, Q + q))
    aug[:, :Q, :Q] = s[:, :, None] * G * s[:, None, :]
    aug[:, np.arange(Q), np.arange(Q)] += 1.0
    aug[:, :Q, Q:] = sZW
    aug[:, Q:, :Q] = sZW.transpose(0, 2, 1)
    aug[:, Q:, Q:] = WW
    L, ok = safe_cholesky(aug)
    piv = np.diagonal(L, axis1=1, axis2=2)
    ok &= (piv > 0.0).all(axis=1)
    piv = np.where(ok[:, None], piv, 1.0)
    log_piv = np.log(piv)
    log_m = 2.0 * log_piv[:, :Q].sum(axis=1)
    log_xx = 2.0 * log_piv[:, Q : Q + p].sum(axis=1)
    Qy = piv[:, -1] ** 2
    d = log_m + nu * np.log(Qy) + (log_xx if reml else 0.0)
    d = np.where(ok, d, np.inf)
    if not derivs:
        return _Eval(d=d, log_m=log_m, log_xx=log_xx, Ai=None, Q=Qy)
    L22 = np.where(ok[:, None, None], L[:, Q:, Q:], np.eye(q))
    Ai = np.linalg.inv(np.matmul(L22, L22.transpose(0, 2, 1)))
    Li = _lower_inverse(L, Q)
    Mi = np.matmul(Li.transpose(0, 2, 1), Li)
    out = _Eval(d=d, log_m=log_m, log_xx=log_xx, Ai=Ai, Q=Qy)
    # Z'V^-1 W = Z'W - G s M^-1 s Z'W and Z'V^-1 Z = G - G s M^-1 s G; where s > 0 these are
    # M^-1 sZ'W / s and (I - M^-1) / (s s') (as (I + F)^-1 = I - F (I + F)^-1, F = sGs);
    # levels of terms with a small ratio in some replicate use the direct formula.
    T = np.matmul(Li.transpose(0, 2, 1), L[:, Q:, :Q].transpose(0, 2, 1))  # M^-1 sZ'W
    big = s * s >= _SMALL
    t = np.where(big, s, 1.0)
    B = T / t[:, :, None]
    ZVZ = -Mi / (t[:, :, None] * t[:, None, :])
    ZVZ[:, np.arange(Q), np.arange(Q)] += 1.0 / (t * t)
    direct = np.flatnonzero((~big).any(axis=0))
    if direct.size:
        Gs = G[:, direct, :] * s[:, None, :]  # rows of G s at the direct levels
        B[:, direct] = ZW[:, direct] - np.matmul(Gs, T)
        sG = s[:, :, None] * G
        cols = G[:, direct, :] - np.matmul(np.matmul(Gs, Mi), sG)
        ZVZ[:, direct, :] = cols
        ZVZ[:, :, direct] = cols.transpose(0, 2, 1)
    a = Ai[:, :, -1]
    beta = -a[:, :p] * Qy[:, None]
    C = Ai[:, :p, :p] - a[:, :p, None] * a[:, None, :p] * Qy[:, None, None]
    Bx = B[:, :, :p]
    u = B[:, :, p] - np.matmul(Bx, beta[:, :, None])[..., 0]  # Z'P y
    H = ZVZ - np.matmul(np.matmul(Bx, C), Bx.transpose(0, 2, 1))  # Z'P Z
    Htr = H if reml else ZVZ
    tr = np.diagonal(Htr, axis1=1, axis2=2) @ E  # (R, K)
    u2 = (u * u) @ E
    U = u[:, :, None] * E[None]  # (R, Q, K)
    uHu = np.matmul(U.transpose(0, 2, 1), np.matmul(H, U))
    h2 = -np.matmul(np.matmul(E.T[None], Htr * Htr), E[None])
    q1 = -u2
    q2 = 2.0 * uHu
    nq = nu[:, None]
    out.grad = tr + nq * q1 / Qy[:, None]
    out.hess_d = h2 + nq[:, :, None] * (
        q2 / Qy[:, None, None] - q1[:, :, None] * q1[:, None, :] / Qy[:, None, None] ** 2
    )
    out.h2, out.q1, out.q2, out.Bx = h2, q1, q2, Bx
    return (out, (ZVZ, H)) if levels else out


# --------------------------------------------------------------------------- optimiser


def _take(arrays, idx):
    return [x[idx] for x in arrays]


def _start(WW, G, ZW, E, held, nu, reml) -> np.ndarray:
    """The best of a few starting ratios for every replicate."""
    n_rep, K = held.shape
    cands = [np.full(K, c) for c in _STARTS]
    for k in range(K if K > 1 else 0):
        for c in _SINGLE:
            v = np.zeros(K)
            v[k] = c
            cands.append(v)
    best = np.full(n_rep, np.inf)
    lam = np.zeros((n_rep, K))
    for c in cands:
        trial = np.where(held, 0.0, np.broadcast_to(c, (n_rep, K)))
        d = _evaluate(trial, WW, G, ZW, E, nu, reml, False).d
        better = d < best
        best = np.where(better, d, best)
        lam[better] = trial[better]
    return lam


def _newton_direction(ev, lam, held):
    """Projected Newton direction (zero on the bound set) and the bound set."""
    g = ev.grad
    bound = held | ((lam <= 0.0) & (g >= 0.0))
    K = lam.shape[1]
    eye = np.eye(K, dtype=bool)
    Hm = np.where(bound[:, :, None] | bound[:, None, :], 0.0, ev.hess_d)
    Hm = np.where(bound[:, :, None] & eye, 1.0, Hm)
    w, v = np.linalg.eigh(Hm)
    floor = 1e-10 * np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-300)
    w = np.maximum(np.abs(w), floor)
    gf = np.where(bound, 0.0, g)
    step = -np.matmul(v, (np.matmul(v.transpose(0, 2, 1), gf[:, :, None])[..., 0] / w)[..., None])
    return np.where(bound, 0.0, step[..., 0]), bound


def _select(ev: _Eval, index: np.ndarray) -> _Eval:
    """The evaluation of the replicates at ``index``."""
    return _Eval(
        **{
            f.name: None if getattr(ev, f.name) is None else getattr(ev, f.name)[index]
            for f in fields(_Eval)
        }
    )


def _put(store: _Eval | None, n_rep: int, at: np.ndarray, ev: _Eval, rows) -> _Eval:
    """``ev``'s ``rows`` written at ``at`` of ``store`` (allocated for ``n_rep`` replicates
    when None)."""
    if store is None:
        store = _Eval(
            **{f.name: np.zeros((n_rep, *getattr(ev, f.name).shape[1:])) for f in fields(_Eval)}
        )
    for f in fields(_Eval):
        getattr(store, f.name)[at] = getattr(ev, f.name)[rows]
    return store


def _optimise(WW, G, ZW, E, held, nu, reml):
    """``(lam, converged, ev)`` minimising the profiled criterion for every replicate, with
    ``ev`` the evaluation (with derivatives) at the optimum.

    The full Newton step is evaluated with derivatives: when it is accepted (the usual case)
    that evaluation serves the next iteration (or the result); after a shortened step the
    derivatives are evaluated afresh."""
    n_rep, K = held.shape
    lam = _start(WW, G, ZW, E, held, nu, reml)
    converged = np.zeros(n_rep, dtype=bool)
    active = np.flatnonzero(~held.all(axis=1))
    converged[held.all(axis=1)] = True
    store, have = None, np.zeros(n_rep, dtype=bool)
    ev = _evaluate(lam[active], *_take((WW, G, ZW), active), E, nu[active], reml, True)
    for _ in range(_MAX_NEWTON):
        if active.size == 0:
            break
        data = _take((WW, G, ZW), active)
        la, nua = lam[active], nu[active]
        step, _ = _newton_direction(ev, la, held[active])
        full = np.maximum(la + step, 0.0)
        ev_full = _evaluate(full, *data, E, nua, reml, True)
        slack = 1e-13 * np.abs(ev.d)
        full_ok = ev_full.d <= ev.d + _ARMIJO * (ev.grad * (full - la)).sum(axis=1) + slack
        t = np.where(full_ok, 1.0, 0.5)
        new = np.where(full_ok[:, None], full, la)
        accepted = full_ok.copy()
        todo = np.flatnonzero(~full_ok)
        for _ in range(40):
            if todo.size == 0:
                break
            trial = np.maximum(la[todo] + t[todo, None] * step[todo], 0.0)
            d_new = _evaluate(trial, *_take(data, todo), E, nua[todo], reml, False).d
            decrease = (ev.grad[todo] * (trial - la[todo])).sum(axis=1)
            ok = d_new <= ev.d[todo] + _ARMIJO * decrease + slack[todo]
            new[todo[ok]] = trial[ok]
            accepted[todo[ok]] = True
            todo = todo[~ok]
            t[todo] *= 0.5
        change = np.abs(new - la).max(axis=1)
        small = change <= _STEP_RTOL * np.maximum(1.0, np.abs(la).max(axis=1))
        done = (accepted & full_ok & small) | ~accepted
        lam[active] = np.where(accepted[:, None], new, la)
        converged[active[done & accepted]] = True
        final = np.flatnonzero(done & accepted & full_ok)
        if final.size:
            store = _put(store, n_rep, active[final], ev_full, final)
            have[active[final]] = True
        # no descent found: converged only if already stationary
        stuck = active[~accepted]
        if stuck.size:
            converged[stuck] = small[~accepted]
        keep = ~done
        fresh = np.flatnonzero(keep & ~full_ok)
        ev = _select(ev_full, np.flatnonzero(keep))
        if fresh.size:  # shortened steps: derivatives at the new point
            redo = _evaluate(new[fresh], *_take(data, fresh), E, nua[fresh], reml, True)
            at = np.searchsorted(np.flatnonzero(keep), fresh)
            for f in fields(_Eval):
                getattr(ev, f.name)[at] = getattr(redo, f.name)
        active = active[keep]
    converged &= (lam < _LAM_MAX).all(axis=1)
    missing = np.flatnonzero(~have)
    if missing.size:
        redo = _evaluate(lam[missing], *_take((WW, G, ZW), missing), E, nu[missing], reml, True)
        store = _put(store, n_rep, missing, redo, slice(None))
    return lam, converged, store


# --------------------------------------------------------------------------- fit


def _one_blas_thread():
    """A context holding BLAS to one thread per caller (the matrices are small: its threads
    cost more than they save), when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _satterthwaite(ev, lam, held, C, Q, s2, nu, E, var_k, coef):
    """Satterthwaite df of ``beta_coef`` over (lam_free, sigma2), with the observed Hessian
    of ``D = nu log s + h(lam) + Q(lam) / s`` (module docstring)."""
    n_rep, K = lam.shape
    free = (lam > 0.0) & ~held
    m = K + 1
    Hd = np.zeros((n_rep, m, m))
    Hd[:, :K, :K] = ev.h2 + ev.q2 / s2[:, None, None]
    Hd[:, :K, K] = Hd[:, K, :K] = -ev.q1 / s2[:, None] ** 2
    Hd[:, K, K] = -nu / s2**2 + 2.0 * Q / s2**3
    c = C[:, :, coef]
    bc = np.matmul(ev.Bx, c[:, :, None])[..., 0]  # (R, Q)
    g = np.empty((n_rep, m))
    g[:, :K] = s2[:, None] * ((bc * bc) @ E)
    g[:, K] = C[:, coef, coef]
    keep = np.concatenate([free, np.ones((n_rep, 1), dtype=bool)], axis=1)
    g = np.where(keep, g, 0.0)
    Hd = np.where(keep[:, :, None] & keep[:, None, :], Hd, 0.0)
    Hd = np.where(~keep[:, :, None] & np.eye(m, dtype=bool), 1.0, Hd)
    with np.errstate(divide="ignore", invalid="ignore"):
        try:
            quad = (g * np.linalg.solve(Hd, g[:, :, None])[..., 0]).sum(axis=1)
        except np.linalg.LinAlgError:
            quad = np.full(n_rep, np.nan)
        df = var_k**2 / quad
    return df


def _fit_block(W, used, ids, coef, reml, names, df_method="satterthwaite"):
    """The arrays of an :class:`LmmFit` for one block (NaN where failed)."""
    WW, G, ZW, E, held, n_obs = _block_stats(W, used, ids)
    q = WW.shape[-1]
    p = q - 1
    failed, resid_df, WW, aliased = unfittable(WW, n_obs, coef)
    if failed.any():  # neutral inputs (results are NaN)
        WW = np.where(failed[:, None, None], np.eye(q), WW)
        G = np.where(failed[:, None, None], 0.0, G)
        ZW = np.where(failed[:, None, None], 0.0, ZW)
        held = held | failed[:, None]
        resid_df = np.where(failed, 1.0, resid_df)
        n_obs = np.where(failed, 1 + p, n_obs)
    nu = resid_df if reml else n_obs.astype(float)
    lam, converged, ev = _optimise(WW, G, ZW, E, held, nu, reml)
    Q, beta, C, _, loglik = profiled_gls(ev.Ai, resid_df, ev.log_m, ev.log_xx)
    s2 = Q / nu
    if not reml:
        loglik = -0.5 * (nu * (1.0 + np.log(2.0 * np.pi * Q / nu)) + ev.log_m)
    cov_beta = s2[:, None, None] * C
    var_k = cov_beta[:, coef, coef]
    boundary = ((lam == 0.0) & ~held).any(axis=1)

    if df_method == "kenward-roger":
        _, (ZVZ, H) = _evaluate(lam, WW, G, ZW, E, nu, reml, True, levels=True)
        scale, df = kenward_roger_levels(lam, held, C, ev.Bx, ZVZ, H, E, resid_df, coef)
        cov_beta = s2[:, None, None] * scale
        var_k = cov_beta[:, coef, coef]
    else:
        df = _satterthwaite(ev, lam, held, C, Q, s2, nu, E, var_k, coef)
    beta, cov_beta = drop_aliased(beta, cov_beta, aliased)
    bad_df = ~(np.isfinite(df) & (df > 0.0))
    converged &= ~bad_df

    variances = {f"sigma2_{name}": lam[:, k] * s2 for k, name in enumerate(names)}
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
        ratio=lam,
        held=held,
        loglik=loglik,
        **variances,
    )


def fit_lmm(
    Xy: np.ndarray,
    terms: Sequence[tuple[str, np.ndarray]],
    used: np.ndarray,
    *,
    coef: int = 1,
    reml: bool = True,
    analysis: str = "lmm",
    level: float = 0.95,
    threads: int | None = None,
    df: str = "satterthwaite",
) -> LmmFit:
    """Fit ``y = X beta + sum_k u_k[ids_k] + e`` by REML (ML) for every replicate of a batch.

    Parameters
    ----------
    Xy : (R, N, p + 1) ``[X, y]``, finite, zero in every row outside ``used`` (the layout of
        ``ModelArrays.Xy`` from :func:`trialsim.analyse.prepare.ancova_arrays`).
    terms : ``(name, ids)`` per random intercept; ``ids`` (R, N) or (N,) int level of each
        row, -1 where the row is not in the term. Names label the variance components
        (``"residual"`` is taken).
    used : (R, N) bool rows used.
    coef : column of X whose coefficient is reported.
    reml : REML (True) or maximum likelihood.
    analysis, level, threads : the record's name, confidence level of the t interval,
        blocks of replicates fitted in parallel (default one per core).
    df : ``"satterthwaite"`` (lmerTest's default) or ``"kenward-roger"`` (REML only): the
        SE is then from Kenward and Roger's adjusted covariance (also ``cov_beta``) and the
        df theirs (:mod:`trialsim.analyse.kenward_roger`).

    Returns
    -------
    LmmFit; replicates that cannot be fitted (rank-deficient X, too few rows) are ``failed``
    with NaNs; nothing raises for a replicate.

    Example
    -------
    >>> a = ancova_arrays(data, "psp")                                          # doctest: +SKIP
    >>> fit_lmm(a.Xy, [("cluster", a.cluster), ("group", a.group)], a.mask)     # doctest: +SKIP
    """
    names = [str(name) for name, _ in terms]
    if check_df_method(df) == "kenward-roger" and not reml:
        raise ValueError("Kenward-Roger df need a REML fit (reml=True)")
    if not names:
        raise UserError("fit_lmm needs at least one random-intercept term")
    if len(set(names)) != len(names) or "residual" in names:
        raise UserError(f"term names must differ and not be 'residual', got {names}")
    Xy, used, coef, *ids = masked_inputs(Xy, used, coef, *(i for _, i in terms))
    ids = np.ascontiguousarray(np.stack(ids, axis=-1))
    used = np.ascontiguousarray(used)
    n_rep = Xy.shape[0]
    levels = sum(int(i.max(initial=-1)) + 1 for i in ids.transpose(2, 0, 1)) or 1
    per = max(1, min(256, _BLOCK_CELLS // min(levels, Xy.shape[1]) ** 2))
    blocks = [slice(a, min(a + per, n_rep)) for a in range(0, n_rep, per)]

    def run(b):
        W = np.ascontiguousarray(Xy[b])
        if not np.isfinite(W).all():
            raise ValueError("Xy has non-finite values; zero the rows outside 'used'")
        return _fit_block(W, used[b], ids[b], coef, reml, names, df)

    with _one_blas_thread():  # blocks run on our threads; BLAS threads would oversubscribe
        parts = list(map_in_threads(run, blocks, threads))
    out, estimates = joined_estimates(parts, analysis, level)
    return LmmFit(
        estimates=estimates,
        beta=out["beta"],
        cov_beta=out["cov_beta"],
        sigma2_residual=out["sigma2_residual"],
        variance={name: out[f"sigma2_{name}"] for name in names},
        ratio=out["ratio"],
        held=out["held"],
        loglik=out["loglik"],
        reml=reml,
    )
