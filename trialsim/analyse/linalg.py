"""Batched small-matrix linear algebra that never raises (for the REML engines).

A batch of replicate fits must not stop because one replicate's matrix is singular: these
return a flag per matrix instead, and the fitters mark those replicates ``failed``.
"""

from __future__ import annotations

import numpy as np

RANK_TOL = 1e-10  # smallest pivot of the scaled X'X taken as full rank


def safe_cholesky(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of a batch ``A`` (..., q, q) and ``ok`` (...), False where a
    matrix is not positive definite. LAPACK first; if it refuses some matrix, a column-by-
    column version vectorised over the batch, whose failed matrices get a finite factor (their
    non-positive pivots replaced by 1)."""
    try:
        return np.linalg.cholesky(A), np.ones(A.shape[:-2], dtype=bool)
    except np.linalg.LinAlgError:
        pass
    q = A.shape[-1]
    L = np.zeros_like(A)
    ok = np.ones(A.shape[:-2], dtype=bool)
    for j in range(q):
        row = L[..., j, :j]
        pivot = A[..., j, j] - (row * row).sum(-1)
        good = pivot > 0.0
        ok &= good
        L[..., j, j] = np.sqrt(np.where(good, pivot, 1.0))
        below = A[..., j + 1 :, j] - np.matmul(L[..., j + 1 :, :j], row[..., None])[..., 0]
        L[..., j + 1 :, j] = below / L[..., j, j, None]
    return L, ok


def full_rank(cross_xx: np.ndarray) -> np.ndarray:
    """True where ``X'X`` (R, p, p) is numerically of full rank: every pivot of the Cholesky
    factor of the correlation-scaled matrix exceeds :data:`RANK_TOL`."""
    d = np.sqrt(np.diagonal(cross_xx, axis1=-2, axis2=-1))
    good = (d > 0).all(axis=-1)
    d = np.where(d > 0, d, 1.0)
    scaled = cross_xx / d[..., :, None] / d[..., None, :]
    L, ok = safe_cholesky(np.where(good[:, None, None], scaled, np.eye(scaled.shape[-1])))
    pivots = np.diagonal(L, axis1=-2, axis2=-1) ** 2
    return good & ok & (pivots > RANK_TOL).all(axis=-1)
