"""Cluster-level analysis for few randomised clusters (Hayes & Moulton 2017, ch. 9).

Two stages: regress the outcome on baseline (and period) ignoring treatment, average the
residuals by randomised cluster, and compare cluster means between arms with a two-sample t
test on k_treated + k_control - 2 degrees of freedom. Valid with very few clusters; each
cluster counts once whatever its size.
"""

from __future__ import annotations

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.prepare import ancova_arrays
from trialsim.data import TrialData
from trialsim.errors import UserError


def cluster_level_ttest(data: TrialData, outcome: str, *, level: float = 0.95) -> Estimates:
    """Batched two-stage cluster-level t test of the treatment effect."""
    st = data.structure
    if not st.cluster_randomised or st.n_periods > 1:
        raise UserError(
            "cluster-level analysis needs clusters randomised whole to one arm (a cluster "
            f"column, no periods); these data are {st.label!r}: use the default analysis"
        )
    a = ancova_arrays(data, outcome)
    site = f"{st.site}[" if st.site else "\0"
    keep = [i for i, c in enumerate(a.columns) if c != "treatment" and not c.startswith(site)]
    X = a.X[..., keep] * a.mask[..., None]
    y = np.where(a.mask, a.y, 0.0)
    xtx = np.einsum("rni,rnj->rij", X, X)
    xty = np.einsum("rni,rn->ri", X, y)
    beta = _solve_or_nan(xtx, xty)
    resid = np.where(a.mask, y - np.einsum("rni,ri->rn", X, beta), 0.0)

    r, _ = y.shape
    n_clusters = int(a.cluster.max()) + 1
    flat = (np.arange(r)[:, None] * n_clusters + a.cluster).ravel()
    size = np.bincount(flat, weights=a.mask.ravel(), minlength=r * n_clusters)
    total = np.bincount(flat, weights=resid.ravel(), minlength=r * n_clusters)
    arm = np.bincount(flat, weights=a.treated.ravel(), minlength=r * n_clusters)
    present = (size > 0).reshape(r, n_clusters)
    mean = (total / np.maximum(size, 1)).reshape(r, n_clusters)
    treated = (arm > 0).reshape(r, n_clusters) & present
    control = ~(arm > 0).reshape(r, n_clusters) & present

    k1, k0 = treated.sum(1), control.sum(1)
    m1 = np.where(treated, mean, 0).sum(1) / np.maximum(k1, 1)
    m0 = np.where(control, mean, 0).sum(1) / np.maximum(k0, 1)
    ss = np.where(treated, (mean - m1[:, None]) ** 2, 0).sum(1)
    ss += np.where(control, (mean - m0[:, None]) ** 2, 0).sum(1)
    df = (k1 + k0 - 2).astype(float)
    ok = (k1 >= 1) & (k0 >= 1) & (df >= 1) & np.isfinite(beta).all(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(ss / df * (1 / k1 + 1 / k0))
    nan = np.full(r, np.nan)
    return Estimates.from_t(
        "cluster-level",
        np.where(ok, m1 - m0, nan),
        np.where(ok, se, nan),
        np.where(ok, df, nan),
        level=level,
        failed=~ok,
    )


def _solve_or_nan(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray:
    """Batched least-squares coefficients; NaN for a replicate whose design is singular
    (e.g. no data), so one bad replicate is counted as failed instead of aborting the batch."""
    beta = np.full(xty.shape, np.nan)
    ok = np.linalg.matrix_rank(xtx) == xtx.shape[-1]
    if ok.any():
        beta[ok] = np.linalg.solve(xtx[ok], xty[ok][..., None])[..., 0]
    return beta
