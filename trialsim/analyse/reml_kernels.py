"""Compiled per-replicate kernels of the batched REML engine (:mod:`trialsim.analyse.reml`).

The engine's work per replicate is a handful of ``q x q`` matrices (``q`` = columns of
``[X, y]``, 12 for the SFT ANCOVA): the profiled deviance on a grid and ~5 Newton steps, each
a Cholesky factor or inverse of ``A(lam) = S - sum_s w_s(lam) T_s``. Batched numpy spends
most of that time in LAPACK's per-matrix overhead and in temporaries; these numba kernels loop
over the replicates of a block and keep each replicate's matrices in cache. They release the
GIL, so blocks run on several threads (see :func:`trialsim.parallel.map_in_threads`).

The mathematics is in the docstring of :mod:`trialsim.analyse.reml`; the kernels follow it
step for step (same grid, starting rule, safeguards and stopping rule as documented there).
Functions are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

# numpy float semantics (x / 0 -> inf, not an exception); fused multiply-adds but no
# reassociation, so a sum does not depend on how many (zero) size classes a block carries
_JIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": {"contract", "nsz"}}


@numba.njit(**_JIT)
def _pack(M, out):
    """The lower triangle of the symmetric ``M``, row by row, into the vector ``out``."""
    k = 0
    for i in range(M.shape[0]):
        for j in range(i + 1):
            out[k] = M[i, j]
            k += 1


@numba.njit(**_JIT)
def _unpack(packed, out, both):
    """``out``'s lower triangle (and upper too if ``both``) from a :func:`_pack` vector."""
    k = 0
    for i in range(out.shape[0]):
        for j in range(i + 1):
            out[i, j] = packed[k]
            if both:
                out[j, i] = packed[k]
            k += 1


@numba.njit(**_JIT)
def _combine(S, T, coef, out):
    """``out = S - sum_s coef[s] T[s]`` on packed triangles (contiguous vector passes)."""
    out[:] = S
    for s in range(coef.size):
        c = coef[s]
        for k in range(out.size):
            out[k] -= c * T[s, k]


@numba.njit(**_JIT)
def _cholesky_inplace(A):
    """Lower Cholesky factor of ``A`` in its lower triangle; False if not positive definite."""
    q = A.shape[0]
    for j in range(q):
        d = A[j, j]
        for k in range(j):
            d -= A[j, k] * A[j, k]
        if not d > 0.0:
            return False
        d = np.sqrt(d)
        A[j, j] = d
        for i in range(j + 1, q):
            acc = A[i, j]
            for k in range(j):
                acc -= A[i, k] * A[j, k]
            A[i, j] = acc / d
    return True


@numba.njit(**_JIT)
def _inverse_from_cholesky(L, Linv, out):
    """``out = (L L')^-1`` from the lower factor ``L`` (``Linv`` is workspace)."""
    q = L.shape[0]
    for j in range(q):  # Linv = L^-1, lower triangular, column by column
        for i in range(q):
            Linv[i, j] = 0.0
        Linv[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, q):
            acc = 0.0
            for k in range(j, i):
                acc -= L[i, k] * Linv[k, j]
            Linv[i, j] = acc / L[i, i]
    for i in range(q):  # out = Linv' Linv
        for j in range(i + 1):
            acc = 0.0
            for k in range(i, q):
                acc += Linv[k, i] * Linv[k, j]
            out[i, j] = acc
            out[j, i] = acc


@numba.njit(**_JIT)
def _deviance(S, T, coef, log_v, resid_df, packed, work):
    """Profiled REML deviance of one replicate at one ``lam`` (``inf`` if A is not PD), given
    packed ``S`` and ``T``, the weights ``coef[s] = lam / (1 + lam n_s)`` and
    ``log_v = log|V_lam|``; ``packed`` and ``work`` (q, q) are workspace."""
    _combine(S, T, coef, packed)
    _unpack(packed, work, False)
    if not _cholesky_inplace(work):
        return np.inf
    last = work.shape[0] - 1
    det_xx = 1.0  # |A_xx| as a product of squared pivots: one log instead of q
    for i in range(last):
        det_xx *= work[i, i] * work[i, i]
    if 0.0 < det_xx < np.inf:
        log_det_xx = np.log(det_xx)
    else:  # under- or overflow: sum the logs
        log_det_xx = 0.0
        for i in range(last):
            log_det_xx += 2.0 * np.log(work[i, i])
    return log_v + log_det_xx + resid_df * 2.0 * np.log(work[last, last])


@numba.njit(**_JIT)
def _slope_curvature(S, T, n_size, sizes, resid_df, lam, ws, cw, pw, terms):
    """First and second derivatives of ``d(lam)`` for one replicate.

    ``d = log|V_lam| + log|A| + (n - p - 1) log Q``; with ``A1, A2`` the derivatives of
    ``A(lam)``: ``log|A|' = tr(A^-1 A1)``, ``log|A|'' = tr(A^-1 A2) - tr(A^-1 A1 A^-1 A1)``;
    with ``a = A^-1 e_y`` (``1/Q = a_y``): ``(A^-1)_yy' = -a'A1 a`` and
    ``(A^-1)_yy'' = 2 a'A1 A^-1 A1 a - a'A2 a``. ``S`` and ``T`` are packed; ``ws`` is a
    (6, q, q) workspace: A (then its Cholesky factor), A1, A2, A^-1, L^-1 and A^-1 A1; ``cw``
    (3, sizes) and ``pw`` (3, packed length) too. ``terms`` receives the parts the
    Satterthwaite df needs: (log|V|'', log|A|'', log Q', log Q'')."""
    q = ws.shape[1]
    A, A1, A2, Ai, Linv, P = ws[0], ws[1], ws[2], ws[3], ws[4], ws[5]
    n_s = sizes.size
    c0, c1, c2 = cw[0], cw[1], cw[2]
    lv1 = 0.0
    lv2 = 0.0
    for s in range(n_s):
        u = 1.0 + lam * sizes[s]
        c0[s] = lam / u
        c1[s] = 1.0 / (u * u)  # A1 = -sum c1 T, A2 = -sum c2 T
        c2[s] = -2.0 * sizes[s] / (u * u * u)
        lv1 += n_size[s] * sizes[s] / u
        lv2 -= n_size[s] * (sizes[s] / u) ** 2
    pa, pa1, pa2 = pw[0], pw[1], pw[2]
    pa[:] = S
    pa1[:] = 0.0
    pa2[:] = 0.0
    for s in range(n_s):
        for k in range(S.size):
            t = T[s, k]
            pa[k] -= c0[s] * t
            pa1[k] -= c1[s] * t
            pa2[k] -= c2[s] * t
    _unpack(pa, A, False)
    _unpack(pa1, A1, True)
    _unpack(pa2, A2, True)
    if not _cholesky_inplace(A):
        terms[:] = np.nan
        Ai[:] = np.nan
        return np.nan, np.nan
    _inverse_from_cholesky(A, Linv, Ai)
    la1 = 0.0
    la2 = 0.0
    for i in range(q):
        for j in range(q):
            la1 += Ai[i, j] * A1[i, j]
            la2 += Ai[i, j] * A2[i, j]
            P[i, j] = 0.0
        for k in range(q):
            a_ik = Ai[i, k]
            for j in range(q):
                P[i, j] += a_ik * A1[k, j]
    for i in range(q):
        for j in range(q):
            la2 -= P[i, j] * P[j, i]
    # log Q, Q = 1 / (A^-1)_yy, with a = A^-1 e_y and b = A1 a
    last = q - 1
    qy = Ai[last, last]
    q1 = 0.0
    q2 = 0.0
    for i in range(q):
        b_i = 0.0
        a2_i = 0.0
        for k in range(q):
            b_i += A1[i, k] * Ai[k, last]
            a2_i += A2[i, k] * Ai[k, last]
        q1 -= Ai[i, last] * b_i
        q2 -= Ai[i, last] * a2_i
        # 2 b' A^-1 b = 2 b' (A^-1 A1 a) = 2 sum_i b_i (P a)_i
        pa_i = 0.0
        for k in range(q):
            pa_i += P[i, k] * Ai[k, last]
        q2 += 2.0 * b_i * pa_i
    lq1 = -q1 / qy
    lq2 = -(q2 / qy - (q1 / qy) ** 2)
    terms[0], terms[1], terms[2], terms[3] = lv2, la2, lq1, lq2
    return lv1 + la1 + (resid_df - 1.0) * lq1, lv2 + la2 + (resid_df - 1.0) * lq2


@numba.njit(**_JIT)
def fit_ratio(S, T, n_size, sizes, resid_df, grid, step_tol, max_newton):
    """Minimise the profiled deviance over ``lam >= 0`` for every replicate of a block, and
    evaluate what the fit reports at the optimum.

    Parameters
    ----------
    S : (R, q, q) ``W'W``; T : (R, S, q, q) size-pooled cluster products; n_size : (R, S)
        clusters of each size; sizes : (S,) the sizes; resid_df : (R,) ``n - p``.
    grid : the common starting grid (``grid[0] = 0``, then log-spaced).
    step_tol, max_newton : stopping rule of the safeguarded Newton iteration.

    Returns
    -------
    lam, converged : (R,) the optimum and whether the iteration met the stopping rule.
    Ai : (R, q, q) ``A(lam)^-1``.
    terms : (R, 6) log|V_lam|, log|A_xx|, and the derivative parts of
        :func:`_slope_curvature` (log|V|'', log|A|'', log Q', log Q'').
    """
    n_rep, q = S.shape[0], S.shape[-1]
    n_grid = grid.size
    lam_out = np.empty(n_rep)
    converged = np.zeros(n_rep, dtype=np.bool_)
    Ai_out = np.empty((n_rep, q, q))
    terms_out = np.empty((n_rep, 6))
    m = q * (q + 1) // 2  # packed lower triangles: contiguous, half the arithmetic
    Sp = np.empty(m)
    Tp = np.empty((sizes.size, m))
    packed = np.empty(m)
    work = np.empty((q, q))
    ws = np.empty((6, q, q))
    cw = np.empty((3, sizes.size))
    pw = np.empty((3, m))
    dev = np.empty(n_grid)
    log_step = np.log(grid[3] / grid[2])
    # the grid is common: its weights and log(1 + lam n_s) once for the block
    grid_coef = np.empty((n_grid, sizes.size))
    grid_log = np.empty((n_grid, sizes.size))
    for k in range(n_grid):
        for s in range(sizes.size):
            grid_coef[k, s] = grid[k] / (1.0 + grid[k] * sizes[s])
            grid_log[k, s] = np.log1p(grid[k] * sizes[s])
    for r in range(n_rep):
        nr, df = n_size[r], resid_df[r]
        _pack(S[r], Sp)
        for s in range(sizes.size):
            _pack(T[r, s], Tp[s])
        for k in range(n_grid):
            log_v = 0.0
            for s in range(sizes.size):
                log_v += nr[s] * grid_log[k, s]
            dev[k] = _deviance(Sp, Tp, grid_coef[k], log_v, df, packed, work)
        k = np.argmin(dev)
        lam = grid[k]
        lo = grid[k - 1] if k > 0 else 0.0
        hi = grid[k + 1] if k + 1 < n_grid else grid[n_grid - 1] * 1e4
        # start from the parabola through the three grid points around the minimum (log scale)
        if k >= 2 and k + 1 < n_grid:
            curv = dev[k + 1] - 2.0 * dev[k] + dev[k - 1]
            shift = -0.5 * (dev[k + 1] - dev[k - 1]) / curv
            if curv > 0.0 and np.isfinite(shift):
                lam *= np.exp(min(max(shift, -1.0), 1.0) * log_step)
        done = False
        terms = terms_out[r, 2:]
        for _ in range(max_newton):
            d1, d2 = _slope_curvature(Sp, Tp, nr, sizes, df, lam, ws, cw, pw, terms)
            at_boundary = lam == 0.0 and d1 >= 0.0
            if d1 < 0.0:
                lo = lam
            if d1 > 0.0:
                hi = lam
            newton = lam - d1 / d2
            inside = d2 > 0.0 and lo < newton < hi and np.isfinite(newton)
            if inside:
                new = newton
            elif lo > 0.0 and hi > 4.0 * lo:
                new = np.sqrt(lo * hi)
            else:
                new = 0.5 * (lo + hi)
            # Newton converges quadratically: a step below step_tol * lam is (to second
            # order) the error left at lam, where everything reported was just evaluated
            step_small = abs(new - lam) <= step_tol * lam
            done = at_boundary or (step_small and inside) or d1 == 0.0 or hi - lo <= 1e-14
            if done:
                break
            lam = new
        if not done:  # out of iterations: report at the last iterate
            _slope_curvature(Sp, Tp, nr, sizes, df, lam, ws, cw, pw, terms)
        lam_out[r] = lam
        converged[r] = done and lam < grid[n_grid - 1]
        Ai_out[r] = ws[3]
        log_v = 0.0
        for s in range(sizes.size):
            log_v += nr[s] * np.log1p(lam * sizes[s])
        log_det_xx = 0.0
        for i in range(q - 1):
            log_det_xx += 2.0 * np.log(ws[0, i, i])
        terms_out[r, 0], terms_out[r, 1] = log_v, log_det_xx
    return lam_out, converged, Ai_out, terms_out


@numba.njit(**_JIT)
def cluster_sums(W, used, cluster, n_groups):
    """Per-cluster sums ``z_c`` of the rows of ``W`` (R, N, q) in use, and cluster sizes.

    Returns z (R, G, q) and n_c (R, G) for cluster ids 0..G-1; rows with cluster -1 or not
    ``used`` are skipped."""
    n_rep, n, q = W.shape
    z = np.zeros((n_rep, n_groups, q))
    n_c = np.zeros((n_rep, n_groups), dtype=np.int64)
    for r in range(n_rep):
        for i in range(n):
            c = cluster[r, i]
            if c >= 0 and used[r, i]:
                n_c[r, c] += 1
                for j in range(q):
                    z[r, c, j] += W[r, i, j]
    return z, n_c


@numba.njit(**_JIT)
def pool_by_size(z, n_c, sizes):
    """``sum z_c z_c'`` and the number of clusters, pooled over the clusters of each size.

    ``sizes`` (S,) holds every non-zero size in ``n_c``, ascending. Returns T (R, S, q, q) and
    n_size (R, S)."""
    n_rep, n_groups, q = z.shape
    slot = np.full(int(sizes[-1]) + 1, -1)
    for s in range(sizes.size):
        slot[int(sizes[s])] = s
    T = np.zeros((n_rep, sizes.size, q, q))
    n_size = np.zeros((n_rep, sizes.size))
    for r in range(n_rep):
        for c in range(n_groups):
            if n_c[r, c] == 0:
                continue
            s = slot[n_c[r, c]]
            n_size[r, s] += 1.0
            for i in range(q):
                zi = z[r, c, i]
                for j in range(q):
                    T[r, s, i, j] += zi * z[r, c, j]
    return T, n_size
