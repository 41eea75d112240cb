"""Within-municipality correlation of two visits when the later one is missing at random.

With monotone dropout depending on the earlier value, complete pairs give a biased
correlation (range restriction), but the factored likelihood is still maximum likelihood
(Anderson 1957, JASA 52:200; Little & Rubin 2019, Statistical Analysis with Missing Data,
§7.2): the mean and variance of the earlier visit ``x`` from everyone, the regression of the
later ``y`` on ``x`` from the complete pairs, then

    var_y = beta^2 var_x + s2_resid,      r = beta sqrt(var_x / var_y).

Municipality means are removed first (the scenario's baseline-follow-up correlation is that of
the person-level scores; municipality effects are a separate ICC).
"""

from __future__ import annotations

import numpy as np


def _demean(values: np.ndarray, strata: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Values minus their stratum mean over the rows ``use`` (NaN elsewhere)."""
    out = np.full(values.shape, np.nan)
    codes = np.unique(strata[use], return_inverse=True)[1]
    sums = np.bincount(codes, weights=values[use])
    counts = np.bincount(codes)
    out[use] = values[use] - (sums / counts)[codes]
    return out


def mar_correlation(x: np.ndarray, y: np.ndarray, strata: np.ndarray) -> tuple[float, int]:
    """ML correlation of ``x`` (earlier) and ``y`` (later, MAR given x) within strata.

    Returns ``(r, n_pairs)``; NaN when fewer than 10 complete pairs.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    has_x = np.isfinite(x)
    pair = has_x & np.isfinite(y)
    n_pairs = int(pair.sum())
    if n_pairs < 10:
        return float("nan"), n_pairs
    n_strata = len(np.unique(strata[has_x]))
    xc = _demean(x, strata, has_x)
    var_x = float(np.sum(xc[has_x] ** 2) / (has_x.sum() - n_strata))
    # regression of y on x with stratum intercepts, on the complete pairs
    xp = _demean(x, strata, pair)[pair]
    yp = _demean(y, strata, pair)[pair]
    beta = float(xp @ yp / (xp @ xp))
    n_strata_pairs = len(np.unique(strata[pair]))
    s2 = float(np.sum((yp - beta * xp) ** 2) / (n_pairs - n_strata_pairs - 1))
    var_y = beta**2 * var_x + s2
    return float(beta * np.sqrt(var_x / var_y)), n_pairs


def fisher_mean(rs, weights) -> float:
    """Weighted mean of correlations on Fisher's z scale (NaNs ignored)."""
    rs, weights = np.asarray(rs, dtype=float), np.asarray(weights, dtype=float)
    ok = np.isfinite(rs) & (weights > 0)
    if not ok.any():
        return float("nan")
    z = np.arctanh(np.clip(rs[ok], -0.999, 0.999))
    return float(np.tanh(np.sum(weights[ok] * z) / np.sum(weights[ok])))
