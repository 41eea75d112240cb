"""Maximum-likelihood beta-binomial fit of sessions attended out of sessions offered.

Attended ``k_i`` of ``n_i`` sessions, ``k_i ~ BetaBinomial(n_i, mu phi, (1 - mu) phi)``: mean
attended share ``mu`` and precision ``phi = a + b`` (the scenario's ``attendance.mean_fraction``
and ``attendance.precision``). The log-likelihood is

    sum_i log C(n_i, k_i) + log B(k_i + a, n_i - k_i + b) - log B(a, b),

maximised over (logit mu, log phi); standard errors from the observed information (numerical
Hessian). scipy.stats.betabinom is the oracle in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from trialsim.errors import UserError

PRECISION_MAX = 1e6  # the scenario's upper bound: beyond it the fit is binomial


@dataclass(frozen=True)
class BetaBinomialFit:
    mean: float
    precision: float
    se_mean: float
    se_log_precision: float
    loglik: float
    n: int


def beta_binomial_loglik(mean, precision, attended, offered) -> float:
    """Log-likelihood of counts ``attended`` out of ``offered`` (arrays)."""
    k = np.asarray(attended, dtype=float)
    n = np.asarray(offered, dtype=float)
    a, b = mean * precision, (1.0 - mean) * precision
    log_choose = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    return float(np.sum(log_choose + special.betaln(k + a, n - k + b) - special.betaln(a, b)))


def fit_beta_binomial(attended, offered) -> BetaBinomialFit:
    """ML estimates of the attended share and the beta precision (see module docstring)."""
    k = np.asarray(attended, dtype=float)
    n = np.asarray(offered, dtype=float)
    if k.size < 3 or np.any(n <= 0) or np.any((k < 0) | (k > n)):
        raise UserError("attendance fit needs >= 3 treated people with 0 <= attended <= offered")
    # identical (k, n) pairs share one term: counts weight them
    pairs, counts = np.unique(np.column_stack([k, n]), axis=0, return_counts=True)
    kk, nn = pairs[:, 0], pairs[:, 1]
    share = float(np.sum(counts * kk) / np.sum(counts * nn))
    if share <= 0.0 or share >= 1.0:
        raise UserError(f"everyone attended {'none' if share <= 0 else 'all'} of the sessions")
    log_choose = special.gammaln(nn + 1) - special.gammaln(kk + 1) - special.gammaln(nn - kk + 1)

    def negloglik(theta):
        mu, phi = special.expit(theta[0]), np.exp(theta[1])
        a, b = mu * phi, (1.0 - mu) * phi
        terms = log_choose + special.betaln(kk + a, nn - kk + b) - special.betaln(a, b)
        return -float(counts @ terms)

    start = np.array([special.logit(share), np.log(3.0)])
    bounds = [(-15.0, 15.0), (np.log(1e-3), np.log(PRECISION_MAX))]
    res = optimize.minimize(negloglik, start, method="L-BFGS-B", bounds=bounds)
    res = optimize.minimize(
        negloglik,
        res.x,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000},
    )
    theta = np.clip(res.x, [b[0] for b in bounds], [b[1] for b in bounds])
    hess = _hessian(negloglik, theta)
    try:
        cov = np.linalg.inv(hess)
        se_logit, se_log_phi = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        se_logit = se_log_phi = np.nan
    mu = float(special.expit(theta[0]))
    return BetaBinomialFit(
        mean=mu,
        precision=float(np.exp(theta[1])),
        se_mean=float(se_logit * mu * (1.0 - mu)),
        se_log_precision=float(se_log_phi),
        loglik=-float(negloglik(theta)),
        n=int(k.size),
    )


def _hessian(f, x, h=1e-4):
    """Central-difference Hessian of a scalar function of a small vector."""
    d = len(x)
    H = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            e_i, e_j = np.eye(d)[i] * h, np.eye(d)[j] * h
            H[i, j] = (
                f(x + e_i + e_j) - f(x + e_i - e_j) - f(x - e_i + e_j) + f(x - e_i - e_j)
            ) / (4 * h * h)
    return H
