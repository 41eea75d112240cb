"""Attendance (dose) analyses of the partially nested design (DESIGN.md §4, "Attendance").

Controls never attend, treated participants attend a share ``f`` of the offered sessions
(``attended_fraction``). Four analyses of the outcome at one follow-up visit, each adjusted for
the baseline of the same outcome and municipality strata (the covariates of
:func:`~trialsim.analyse.prepare.ancova_arrays`), on complete cases:

* :func:`per_protocol` and :func:`as_treated` compare people by the dose they *chose*. When
  attendance depends on prognosis (self-selection) they are biased: both confound the effect of
  attending with the prognosis of those who attend.
* :func:`cace_compliance` and :func:`cace_dose` use randomisation as the instrument for the
  received dose (two-stage least squares), which keeps the protection of randomisation: the
  instrument is independent of prognosis, and controls cannot attend (one-sided
  non-compliance), so the only assumption beyond randomisation is the exclusion restriction
  (being offered SFT acts only through the sessions attended).

Standard errors are cluster-robust with the treatment groups as clusters and every
participant outside a group (the controls) a singleton cluster (in cluster-randomised designs
the randomised cluster is used instead). The CR1 small-sample factor
``G/(G-1) * (n-1)/(n-k)`` is applied (as Stata's ``vce(cluster)`` and linearmodels'
``debiased=True``), and the reference distribution is t with ``G - 1`` degrees of freedom, G
the number of clusters with a used observation. Everything is batched over replicates.

References
----------
Angrist, Imbens & Rubin (1996). Identification of causal effects using instrumental
variables. JASA 91:444-455.
Dunn, Maracy & Tomenson (2005). Estimating treatment effects from randomized clinical trials
with noncompliance and loss to follow-up: the role of instrumental variable methods. Stat
Methods Med Res 14:369-395.
Cameron & Miller (2015). A practitioner's guide to cluster-robust inference. J Hum Resour
50:317-372.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.prepare import ModelArrays, ancova_arrays
from trialsim.data import TrialData

DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class IVFit:
    """A batched just-identified IV (or OLS) fit: coefficients and CR1 covariance."""

    coef: np.ndarray  # (R, p)
    cov: np.ndarray  # (R, p, p)
    n_obs: np.ndarray  # (R,)
    n_clusters: np.ndarray  # (R,)
    failed: np.ndarray  # (R,) bool


def fit_iv(
    y: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    mask: np.ndarray,
    cluster: np.ndarray,
) -> IVFit:
    """Just-identified 2SLS, batched: ``beta = (Z'X)^-1 Z'y`` with CR1 cluster-robust covariance.

    Parameters
    ----------
    y : (R, N) outcome; X : (R, N, p) regressors; Z : (R, N, p) instruments (``Z = X`` gives
        OLS); mask : (R, N) rows used; cluster : (R, N) integer cluster labels (any values).

    The covariance is ``c A^-1 (sum_g s_g s_g') A^-T`` with ``A = Z'X``, cluster scores
    ``s_g = Z_g' u_g`` and ``c = G/(G-1) (n-1)/(n-p)``. Replicates whose ``Z'X`` is singular, or
    with fewer than two clusters, are flagged ``failed`` with NaN results.
    """
    m = mask.astype(float)
    Xm = np.where(mask[..., None], X, 0.0)
    Zm = np.where(mask[..., None], Z, 0.0) * m[..., None]
    ym = np.where(mask, y, 0.0)
    r, n, p = Xm.shape
    A = np.einsum("rni,rnj->rij", Zm, Xm)
    b = np.einsum("rni,rn->ri", Zm, ym)
    sv = np.linalg.svd(A, compute_uv=False)
    failed = ~(sv[:, -1] > 1e-10 * sv[:, 0])
    A_safe = np.where(failed[:, None, None], np.eye(p), A)
    A_inv = np.linalg.inv(A_safe)
    coef = np.einsum("rij,rj->ri", A_inv, b)
    resid = (ym - np.einsum("rnj,rj->rn", Xm, coef)) * m
    scores = Zm * resid[..., None]

    # relabel clusters 0..C-1 within each replicate, then sum scores per cluster
    _, labels = np.unique(cluster, return_inverse=True)
    labels = labels.reshape(r, n)
    n_labels = int(labels.max()) + 1
    flat = (np.arange(r)[:, None] * n_labels + labels).ravel()
    s = np.zeros((r * n_labels, p))
    np.add.at(s, flat, scores.reshape(-1, p))
    s = s.reshape(r, n_labels, p)
    used = np.zeros(r * n_labels)
    np.add.at(used, flat, m.ravel())
    n_clusters = (used.reshape(r, n_labels) > 0).sum(axis=1)
    meat = np.einsum("rgi,rgj->rij", s, s)
    n_obs = m.sum(axis=1)
    failed |= (n_clusters < 2) | (n_obs <= p)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = n_clusters / (n_clusters - 1.0) * (n_obs - 1.0) / (n_obs - p)
    cov = factor[:, None, None] * A_inv @ meat @ np.swapaxes(A_inv, 1, 2)
    coef[failed] = np.nan
    cov[failed] = np.nan
    return IVFit(coef=coef, cov=cov, n_obs=n_obs, n_clusters=n_clusters, failed=failed)


def clusters_for_se(arrays: ModelArrays) -> np.ndarray:
    """Cluster labels for robust SEs: treatment group, each ungrouped participant alone.

    In cluster-randomised designs (``arrays.cluster >= 0``) the randomised cluster is used.
    """
    r, n = arrays.group.shape
    singleton = np.broadcast_to(np.arange(n), (r, n))
    offset = int(max(arrays.group.max(), arrays.cluster.max(), 0)) + 1
    labels = np.where(arrays.group >= 0, arrays.group, offset + singleton)
    return np.where(arrays.cluster >= 0, arrays.cluster, labels)


def _estimates(name: str, fit: IVFit, column: int, level: float) -> Estimates:
    se = np.sqrt(fit.cov[:, column, column])
    return Estimates.from_t(
        name,
        fit.coef[:, column],
        se,
        fit.n_clusters - 1.0,
        level=level,
        failed=fit.failed.copy(),
    )


def _with_dose(arrays: ModelArrays, dose: np.ndarray) -> np.ndarray:
    """The design matrix with the treatment column replaced by ``dose`` (0 where unused)."""
    X = arrays.X.copy()
    X[..., arrays.treat_column] = np.where(arrays.mask, dose, 0.0)
    return X


def per_protocol(
    data: TrialData,
    outcome: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    visit: int = -1,
    level: float = 0.95,
) -> Estimates:
    """Per-protocol ANCOVA: treated who attended at least ``threshold`` of the sessions vs all
    controls (treated below the threshold are left out).

    The estimate is the adjusted mean difference between "adherers" and controls. It is
    **biased** whenever adherence is related to prognosis (self-selection: better-prognosis
    participants attend more, so it overstates the effect), and with a graded dose-response
    it estimates the effect at the adherers' mean dose rather than any pre-specified dose.
    SE: CR1 cluster-robust by treatment group, t with G - 1 df (module docstring).

    Example
    -------
    >>> est = per_protocol(data, "psp", threshold=0.6)  # doctest: +SKIP
    """
    a = ancova_arrays(data, outcome, visit=visit)
    keep = a.mask & (~a.treated | (a.attended_fraction >= threshold))
    fit = fit_iv(a.y, a.X, a.X, keep, clusters_for_se(a))
    return _estimates(f"per-protocol(f>={threshold:g})", fit, a.treat_column, level)


def as_treated(data: TrialData, outcome: str, *, visit: int = -1, level: float = 0.95) -> Estimates:
    """As-treated dose regression: outcome on attended fraction (controls 0), ANCOVA covariates.

    The coefficient is the difference per full dose (fraction 0 -> 1) by ordinary least
    squares. It ignores randomisation: it is **biased** by self-selection (attendance
    correlated with prognosis), typically overstating the effect, and by any difference
    between treated non-attenders and controls. SE: CR1 cluster-robust by treatment group.
    """
    a = ancova_arrays(data, outcome, visit=visit)
    X = _with_dose(a, np.where(a.treated, a.attended_fraction, 0.0))
    fit = fit_iv(a.y, X, X, a.mask, clusters_for_se(a))
    return _estimates("as-treated(dose)", fit, a.treat_column, level)


def cace_compliance(
    data: TrialData,
    outcome: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    visit: int = -1,
    level: float = 0.95,
) -> Estimates:
    """Complier average causal effect (CACE) by 2SLS with a binary compliance indicator.

    Compliance ``C = 1{attended fraction >= threshold}`` (controls 0: one-sided
    non-compliance) is instrumented by randomisation, with baseline and municipality as
    exogenous covariates. Under randomisation, the exclusion restriction (no effect of the
    offer on those who do not comply) and one-sided non-compliance the Wald/2SLS estimand is
    ``ITT / P(C = 1 | treated)``, the average effect among compliers (Angrist, Imbens & Rubin
    1996). It is unbiased under self-selection; it is only approximately unbiased in small
    samples (the ratio estimator has O(1/n) bias, large when compliance is rare). If the true
    dose-response is graded rather than a step at ``threshold``, non-compliers who attended
    some sessions violate the exclusion restriction and the estimate is inflated.
    SE: CR1 cluster-robust by treatment group, t with G - 1 df.
    """
    a = ancova_arrays(data, outcome, visit=visit)
    comply = (a.treated & (a.attended_fraction >= threshold)).astype(float)
    X = _with_dose(a, comply)
    fit = fit_iv(a.y, X, a.X, a.mask, clusters_for_se(a))
    return _estimates(f"cace-iv-compliance(f>={threshold:g})", fit, a.treat_column, level)


def cace_dose(data: TrialData, outcome: str, *, visit: int = -1, level: float = 0.95) -> Estimates:
    """Effect of full attendance under a linear dose-response, by 2SLS (Dunn et al. 2005).

    The received dose ``D`` = attended fraction (controls 0) is instrumented by randomisation,
    with baseline and municipality as exogenous covariates. If the effect is linear in the dose
    (``effect * D``) the estimand is the full-dose effect, identified as ``ITT / E[D | treated]``
    whatever the self-selection. If the true dose-response is not linear the estimate is still
    ``ITT / E[D | treated]`` (a dose-weighted average slope). SE: CR1 cluster-robust by
    treatment group, t with G - 1 df.
    """
    a = ancova_arrays(data, outcome, visit=visit)
    X = _with_dose(a, np.where(a.treated, a.attended_fraction, 0.0))
    fit = fit_iv(a.y, X, a.X, a.mask, clusters_for_se(a))
    return _estimates("cace-iv-dose(linear)", fit, a.treat_column, level)
