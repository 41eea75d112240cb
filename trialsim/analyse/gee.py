"""GEE with an exchangeable working correlation inside treatment groups (docs/analyses.md).

The marginal (population-averaged) model of :mod:`trialsim.analyse.glm` - Poisson log link
for counts, logistic for binary outcomes, same covariates - fitted by generalised estimating
equations (Liang & Zeger 1986) with working covariance ``V_c = phi A_c^(1/2) R_c A_c^(1/2)``,
``R_c = (1 - alpha) I + alpha J`` within each treatment group (or randomised cluster) and
every participant outside a group (the controls of a partially nested trial) a cluster of
one. ``phi`` and ``alpha`` are the moment estimators of statsmodels' ``Exchangeable``:
``phi = sum r^2 / (n - p)`` and ``alpha = sum_c sum_{j<k} r_j r_k / phi / (n_pairs - p)`` with
Pearson residuals r.

Batched over replicates. Given ``alpha``, the estimating equations ``sum_c D_c' V_c^-1 (y_c -
mu_c) = 0`` are least-squares equations in the whitened design ``X* = R_c^(-1/2) A_c^(1/2)
X_c`` and residuals ``r* = R_c^(-1/2) A_c^(-1/2) (y_c - mu_c)``, where for the exchangeable
matrix ``R^(-1/2) v = (v - c mean(v)) / sqrt(1 - alpha)`` with ``c = 1 - sqrt((1 - alpha) /
(1 + (m - 1) alpha))``. Fisher scoring steps in ``beta`` alternate with updates of ``alpha``
and ``phi`` until the step is below 1e-9 (relative to the largest coefficient). In the
whitened form the Mancl & DeRouen (2001) bias-corrected sandwich of statsmodels
(``cov_type="bias_reduced"``) is ``vcov="CR3"`` of
:func:`trialsim.analyse.ols.cluster_robust`; CR2 (Bell & McCaffrey 2002) is available too.
statsmodels ``GEE`` is the test oracle.

References
----------
Liang KY, Zeger SL (1986). Longitudinal data analysis using generalized linear models.
Biometrika 73:13-22.
Mancl LA, DeRouen TA (2001). A covariance estimator for GEE with improved small-sample
properties. Biometrics 57:126-134.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialsim.analyse.attendance import robust_clusters
from trialsim.analyse.estimate import Estimates
from trialsim.analyse.glm import (
    _design,
    _mean_and_weight,
    fit_glm,
    robust_estimates,
)
from trialsim.analyse.ols import ols_batch
from trialsim.data import TrialData

_MAX_ITER = 100
_TOL = 1e-9


@dataclass(frozen=True)
class GEEFit:
    """A batched exchangeable GEE fit; ``Xs`` and ``rs`` are the whitened design and residuals
    (zero in unused rows), ``bread = (X*'X*)^-1`` (the model-based covariance / phi)."""

    beta: np.ndarray  # (R, p)
    alpha: np.ndarray  # (R,) working correlation
    scale: np.ndarray  # (R,) phi
    bread: np.ndarray  # (R, p, p)
    Xs: np.ndarray  # (R, N, p)
    rs: np.ndarray  # (R, N)
    used: np.ndarray  # (R, N)
    converged: np.ndarray  # (R,)
    failed: np.ndarray  # (R,)


class _Groups:
    """Sums over the (replicate, cluster) cells of grouped rows; singletons stay alone."""

    def __init__(self, cluster: np.ndarray, used: np.ndarray):
        n_rep, n = used.shape
        self.grouped = used & (cluster >= 0)
        self.n_ids = max(int(cluster.max()) + 1, 1)
        self.key = np.where(self.grouped, np.arange(n_rep)[:, None] * self.n_ids + cluster, 0)
        self.n_cells = n_rep * self.n_ids
        self.size = self.sum(np.ones((n_rep, n)))  # (R, N): size of the row's cluster

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-row sum over the row's cluster (grouped rows), values (R, N) or (R, N, p)."""
        extra = values.shape[2:]
        width = int(np.prod(extra)) if extra else 1
        v = np.where(self.grouped.reshape(self.grouped.shape + (1,) * len(extra)), values, 0.0)
        flat_key = (self.key.reshape(-1, 1) * width + np.arange(width)).ravel()
        totals = np.bincount(flat_key, weights=v.reshape(-1), minlength=self.n_cells * width)
        return totals.reshape(self.n_cells, *extra)[self.key]


def _moments(r: np.ndarray, used: np.ndarray, groups: _Groups, p: int):
    """statsmodels' Exchangeable moment estimators (phi, alpha) from Pearson residuals r."""
    n_obs = used.sum(axis=1)
    scale = (r**2).sum(axis=1) / (n_obs - p)
    total = groups.sum(r)
    m = groups.size
    # each grouped row contributes (r_i * sum_c r - r_i^2) / 2 to the within-pair sum
    pair_sum = np.where(groups.grouped, r * total - r**2, 0.0).sum(axis=1) / 2.0
    n_pairs = np.where(groups.grouped, m - 1.0, 0.0).sum(axis=1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = pair_sum / scale / (n_pairs - p)
    return scale, alpha


def _whiten(v: np.ndarray, alpha: np.ndarray, groups: _Groups) -> np.ndarray:
    """R_c^(-1/2) v for grouped rows (exchangeable R_c), identity for singletons."""
    a = alpha.reshape(-1, *([1] * (v.ndim - 1)))
    m = groups.size.reshape(groups.size.shape + (1,) * (v.ndim - 2))
    c = 1.0 - np.sqrt((1.0 - a) / (1.0 + (m - 1.0) * a))
    mean = groups.sum(v) / np.maximum(m, 1.0)
    grouped = groups.grouped.reshape(groups.grouped.shape + (1,) * (v.ndim - 2))
    return np.where(grouped, (v - c * mean) / np.sqrt(1.0 - a), v)


def fit_gee(
    y: np.ndarray, X: np.ndarray, mask: np.ndarray, cluster: np.ndarray, family: str
) -> GEEFit:
    """Exchangeable GEE (Poisson log link or logistic) for every replicate (module docstring).

    Parameters
    ----------
    y : (R, N) outcome; X : (R, N, p) design; mask : (R, N) rows used;
    cluster : (R, N) cluster ids 0..G-1, -1 for a cluster of one; family : "poisson" or
    "logistic". Starts from the independence GLM (:func:`trialsim.analyse.glm.fit_glm`).
    ``alpha`` is kept inside the range where every working correlation matrix is positive
    definite.
    """
    glm_fit = fit_glm(y, X, mask, family)
    used = glm_fit.used
    ym = np.where(used, np.asarray(y, dtype=float), 0.0)
    Xm = np.where(used[..., None], np.asarray(X, dtype=float), 0.0)
    n_rep, _, p = Xm.shape
    cluster = np.broadcast_to(np.asarray(cluster), used.shape)
    m_max = max(float(_Groups(cluster, used).size.max()), 2.0)
    low = -1.0 / (m_max - 1.0) + 1e-8

    def state(beta, rows):
        """phi, alpha, whitened design and residuals of the replicates ``rows``."""
        u, groups = used[rows], _Groups(cluster[rows], used[rows])
        eta = np.matmul(Xm[rows], beta[:, :, None])[:, :, 0]
        mu, w = _mean_and_weight(eta, family)
        ok = u & (w > 0)
        root_w = np.sqrt(np.where(ok, w, 1.0))
        r = np.where(ok, (ym[rows] - mu) / root_w, 0.0)
        scale, alpha = _moments(r, u, groups, p)
        alpha = np.clip(np.nan_to_num(alpha), low, 1.0 - 1e-8)
        Xs = _whiten(Xm[rows] * np.where(ok, root_w, 0.0)[..., None], alpha, groups)
        return scale, alpha, Xs, _whiten(r, alpha, groups)

    beta = glm_fit.beta.copy()
    failed = glm_fit.failed.copy()
    converged = np.zeros(n_rep, dtype=bool)
    # Fisher scoring in beta alternating with the moment updates of (phi, alpha); only the
    # replicates still moving are iterated
    for _ in range(_MAX_ITER):
        active = np.flatnonzero(~converged & ~failed)
        if active.size == 0:
            break
        _, _, Xs, rs = state(beta[active], active)
        update = ols_batch(rs, Xs, used[active])
        step, bad = update.beta, update.failed
        step = np.where(bad[:, None], 0.0, step)
        beta[active] += step
        failed[active] |= bad
        size = np.sqrt((step**2).sum(axis=1))
        converged[active] = size < _TOL * (1.0 + np.abs(beta[active]).max(axis=1))
    everyone = np.arange(n_rep)
    scale, alpha, Xs, rs = state(beta, everyone)
    final = ols_batch(rs, Xs, used)
    bread, bad = final.bread, final.failed
    return GEEFit(
        beta=beta,
        alpha=alpha,
        scale=scale,
        bread=bread,
        Xs=Xs,
        rs=rs,
        used=used,
        converged=converged & ~failed,
        failed=failed | bad,
    )


def _gee_estimates(name, a, X, family, marginal, vcov, level) -> Estimates:
    cluster = robust_clusters(a)
    fit = fit_gee(a.y, X, a.mask, cluster, family)
    return robust_estimates(
        name,
        X,
        fit.beta,
        fit.used,
        fit.Xs,
        fit.rs,
        fit.bread,
        cluster,
        treat_column=a.treat_column,
        marginal=marginal,
        vcov=vcov,
        level=level,
        failed=fit.failed,
        converged=fit.converged,
        variance={"working_correlation": fit.alpha, "scale": fit.scale},
        boundary=fit.alpha <= 0.0,
    )


def gee_poisson_rate_ratio(
    data: TrialData, outcome: str, *, visit: int = -1, vcov: str = "CR3", level: float = 0.95
) -> Estimates:
    """Log rate ratio of a count outcome by exchangeable Poisson GEE (module docstring).

    Estimand as :func:`trialsim.analyse.glm.poisson_rate_ratio`. SE: Mancl-DeRouen
    bias-corrected sandwich (``vcov="CR3"``) with Bell-McCaffrey df.
    ``variance`` holds the working correlation ``alpha`` and scale ``phi`` per replicate.
    """
    a, X = _design(data, outcome, visit, log_baseline=True)
    return _gee_estimates("gee-poisson-log-rate-ratio", a, X, "poisson", False, vcov, level)


def gee_logistic_odds_ratio(
    data: TrialData,
    outcome: str,
    *,
    scale: str = "marginal",
    visit: int = -1,
    vcov: str = "CR2",
    level: float = 0.95,
) -> Estimates:
    """Log odds ratio of a binary outcome by exchangeable logistic GEE (module docstring).

    The GEE coefficient is population-averaged over the group effects but still conditional
    on baseline and municipality; ``scale="marginal"`` (default) standardises it over the
    sample as :func:`trialsim.analyse.glm.logistic_odds_ratio` does. SE: CR2 with
    Bell-McCaffrey df by default (``vcov="CR3"``: Mancl-DeRouen).
    """
    if scale not in ("marginal", "conditional"):
        raise ValueError(f"scale must be 'marginal' or 'conditional', got {scale!r}")
    a, X = _design(data, outcome, visit, log_baseline=False)
    return _gee_estimates(
        f"gee-logistic-log-odds-ratio({scale})",
        a,
        X,
        "logistic",
        scale == "marginal",
        vcov,
        level,
    )
