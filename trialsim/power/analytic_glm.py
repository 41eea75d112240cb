"""Closed-form power for binary and count outcomes in clustered group trials.

Six functions, one per design and outcome type, vectorised by numpy broadcasting:

=====================  ========================================  ============================
design                 binary (effect: odds ratio)               count (effect: rate ratio)
=====================  ========================================  ============================
partially nested       :func:`power_irgt_binary`                 :func:`power_irgt_count`
cluster-randomised     :func:`power_crt_binary`                  :func:`power_crt_count`
stepped wedge          :func:`power_stepped_wedge_binary`        :func:`power_stepped_wedge_count`
=====================  ========================================  ============================

**The effect and its scale.** The effect is the *marginal* (population-averaged) odds ratio
or rate ratio, treated versus control, with the control arm's risk ``risk_control`` or mean
count per unit of person-time ``rate_control``: the treated arm's risk is
``expit(logit(risk_control) + log(odds_ratio))`` and its rate ``rate_control * rate_ratio``.
This is what trialsim's default analyses estimate -- the logistic GLM standardised to the
marginal log odds ratio and the Poisson GLM's log rate ratio, both with cluster-robust SEs
(docs/analyses.md) -- and what the simulator's ``odds_ratio`` and ``rate_ratio`` mean. A
random-intercept GLMM's *conditional* odds ratio is further from 1 and would need another
formula.

**Variance of an arm's mean.** Every arm ``a`` has a mean ``mu_a`` (risk or rate), a
within-cluster variance per person ``w_a`` and a between-cluster variance of cluster means
``tau2_a``. Its mean over ``k`` clusters of mean size ``m`` (size CV ``cv``, weighted by
size) has variance ::

    V_a = (w_a / m + (1 + cv^2) tau2_a) / k                      (Eldridge et al. 2006)

Two ways to give the between-cluster variation, as in the literature:

* ``icc`` (Donner & Klar 2000): the ICC on the outcome's own scale, a share of the total
  variance ``s_a^2`` (binary ``mu (1 - mu)``, count ``mu + overdispersion mu^2``):
  ``tau2 = icc s^2`` and ``w = (1 - icc) s^2``, so that ``V_a = s^2 DE / (k m)`` with
  ``DE = 1 + ((cv^2 + 1) m - 1) icc``;
* ``cv_between`` (Hayes & Bennett 1999, k): the coefficient of variation of the true cluster
  risks or rates within an arm, ``tau2_a = (cv_between mu_a)^2`` and ``w_a = s_a^2``
  (binomial or Poisson within a cluster).

**The test.** ``scale="log"`` (default): the Wald test of the log odds ratio or log rate
ratio, the delta-method variance ``V_a / (mu_a (1 - mu_a))^2`` (binary) or ``V_a / mu_a^2``
(count) per arm -- the test the GLMs perform. ``scale="difference"``: the test of the risk or
rate difference ``mu_1 - mu_0`` with variance ``V_1 + V_0``, as in the published formulas
(Donner & Klar; Hayes & Bennett; Hussey & Hughes). Reference distributions: ``dist="normal"``,
``"t"`` (degrees of freedom per design, below), or ``"hayes-bennett"`` (normal with one cluster
per arm fewer, the ``c = 1 + ...`` of Hayes & Bennett's formula).

``dropout``: a share ``1 - dropout`` of every person-level count completes (clusters are kept).
``overdispersion`` (counts): the per-person variance is ``mu + overdispersion mu^2`` (0:
Poisson; a log-normal person effect with log-scale SD ``s`` gives ``exp(s^2) - 1``).

References
----------
Donner A, Klar N. Design and Analysis of Cluster Randomization Trials in Health Research.
London: Arnold, 2000.
Hayes RJ, Bennett S. Simple sample size calculation for cluster-randomized trials. Int J
Epidemiol 1999;28:319-326.
Eldridge SM, Ashby D, Kerry S. Int J Epidemiol 2006;35:1292-1300.
Hussey MA, Hughes JP. Contemp Clin Trials 2007;28:182-191.
Moerbeek M, Wong WK. Stat Med 2008;27:3035-3051 (partially nested designs).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from trialsim.errors import UserError
from trialsim.power.analytic import (
    _check_range,
    _check_treatment_matrix,
    _power_t_two_sided,
    _scalar_or_array,
    stepped_wedge_design,
    stepped_wedge_variance,
)

__all__ = [
    "DISTS",
    "SCALES",
    "power_crt_binary",
    "power_crt_count",
    "power_irgt_binary",
    "power_irgt_count",
    "power_stepped_wedge_binary",
    "power_stepped_wedge_count",
    "treated_mean",
]

SCALES = ("log", "difference")
DISTS = ("normal", "t", "hayes-bennett")


# --------------------------------------------------------------------------------------------
# arms: means, variances


def treated_mean(kind: str, control_mean, ratio):
    """The treated arm's risk (``kind="binary"``, ratio an odds ratio) or rate (``"count"``,
    ratio a rate ratio) from the control arm's."""
    if kind == "binary":
        return special.expit(special.logit(control_mean) + np.log(ratio))
    return control_mean * ratio


def _unit_var(kind: str, mu, overdispersion):
    """Total variance of one person's outcome: binomial ``mu (1 - mu)``, count ``mu +
    overdispersion mu^2``."""
    return mu * (1.0 - mu) if kind == "binary" else mu + overdispersion * mu**2


def _link_slope(kind: str, mu):
    """d mean / d linear predictor: ``mu (1 - mu)`` (logit) or ``mu`` (log)."""
    return mu * (1.0 - mu) if kind == "binary" else mu


def _components(kind, mu, icc, cv_between, overdispersion):
    """(w, tau2): within-cluster variance per person and between-cluster variance."""
    s2 = _unit_var(kind, mu, overdispersion)
    if cv_between is None:
        return (1.0 - icc) * s2, icc * s2
    return s2, (cv_between * mu) ** 2


def _check_between(icc, cv_between):
    if (icc is None) == (cv_between is None):
        raise ValueError("give exactly one of icc (Donner & Klar) and cv_between (Hayes & Bennett)")
    if icc is not None:
        return _check_range("icc", icc, 0.0, 1.0, high_open=True), None
    return None, _check_range("cv_between", cv_between, 0.0, np.inf, high_open=True)


def _check_effect(kind, control_mean, ratio, overdispersion):
    name = "risk_control" if kind == "binary" else "rate_control"
    high = 1.0 if kind == "binary" else np.inf
    mu0 = _check_range(name, control_mean, 0.0, high, low_open=True, high_open=True)
    label = "odds_ratio" if kind == "binary" else "rate_ratio"
    r = _check_range(label, ratio, 0.0, np.inf, low_open=True, high_open=True)
    phi = _check_range("overdispersion", overdispersion, 0.0, np.inf, high_open=True)
    return mu0, treated_mean(kind, mu0, r), phi


def _check_options(scale, dist, alpha, dropout):
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if dist not in DISTS:
        raise ValueError(f"dist must be one of {DISTS}, got {dist!r}")
    alpha = _check_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    drop = _check_range("dropout", dropout, 0.0, 1.0, high_open=True)
    return alpha, 1.0 - drop


def _effect_and_var(kind, scale, mu0, mu1, v0, v1):
    """The tested effect and its variance from the arm means and their variances."""
    if scale == "difference":
        return mu1 - mu0, v0 + v1
    theta = np.log(mu1) - np.log(mu0)
    if kind == "binary":
        theta = special.logit(mu1) - special.logit(mu0)
    return theta, v0 / _link_slope(kind, mu0) ** 2 + v1 / _link_slope(kind, mu1) ** 2


def _power(theta, var, df, alpha, dist):
    if dist != "t":  # "normal", "hayes-bennett"
        df = np.inf
    return _scalar_or_array(_power_t_two_sided(theta / np.sqrt(var), df, alpha))


# --------------------------------------------------------------------------------------------
# cluster-randomised trial


def _power_crt(kind, ratio, control_mean, n_clusters, cluster_size, icc, cv_between,
               cv_cluster_size, cluster_ratio, overdispersion, alpha, scale, dist,
               dropout):  # fmt: skip
    mu0, mu1, phi = _check_effect(kind, control_mean, ratio, overdispersion)
    icc, cv_between = _check_between(icc, cv_between)
    k1 = _check_range("n_clusters", n_clusters, 1.0, np.inf, low_open=True, high_open=True)
    m = _check_range("cluster_size", cluster_size, 0.0, np.inf, low_open=True, high_open=True)
    cv = _check_range("cv_cluster_size", cv_cluster_size, 0.0, np.inf, high_open=True)
    r = _check_range("cluster_ratio", cluster_ratio, 0.0, np.inf, low_open=True, high_open=True)
    alpha, completing = _check_options(scale, dist, alpha, dropout)
    k0 = r * k1
    if dist == "hayes-bennett":  # Hayes & Bennett's c = 1 + ...: one cluster per arm fewer
        k1, k0 = k1 - 1.0, k0 - 1.0
        if np.any(np.minimum(k1, k0) <= 0):
            raise UserError(
                "dist='hayes-bennett' needs more than one cluster per arm, got "
                f"n_clusters={n_clusters}, cluster_ratio={cluster_ratio}"
            )
    df = k1 + k0 - 2.0
    if dist == "t" and np.any(df < 1):
        raise UserError(f"dist='t' needs n_clusters * (1 + cluster_ratio) >= 3, got {n_clusters}")
    m_done = m * completing
    arm_var = []
    for mu, k in ((mu0, k0), (mu1, k1)):
        w, tau2 = _components(kind, mu, icc, cv_between, phi)
        arm_var.append((w / m_done + (1.0 + cv**2) * tau2) / k)
    theta, var = _effect_and_var(kind, scale, mu0, mu1, *arm_var)
    return _power(theta, var, df, alpha, dist)


def power_crt_binary(
    odds_ratio,
    *,
    risk_control,
    n_clusters,
    cluster_size,
    icc=None,
    cv_between=None,
    cv_cluster_size=0.0,
    cluster_ratio=1.0,
    alpha=0.05,
    scale="log",
    dist="t",
    dropout=0.0,
):
    """Power of a parallel cluster-randomised trial with a binary outcome.

    ``n_clusters`` treated and ``cluster_ratio * n_clusters`` control clusters of mean size
    ``cluster_size``; the variances of the module docstring. With ``icc``, ``scale=
    "difference"`` and ``dist="normal"`` this is Donner & Klar's (2000, ch. 5) formula with
    Eldridge et al.'s (2006) design effect for a size CV::

        Var(p1 - p0) = (p1 (1 - p1) + p0 (1 - p0)) DE / (k m),  DE = 1 + ((cv^2 + 1) m - 1) icc

    With ``cv_between`` (Hayes & Bennett's k) and ``dist="hayes-bennett"`` it is Hayes &
    Bennett's (1999) eq. (5) solved for power::

        z_beta = |p1 - p0| sqrt(k - 1) / sqrt(p1 (1 - p1) / m + p0 (1 - p0) / m
                 + k_cv^2 (p1^2 + p0^2)) - z_{1 - alpha/2}

    ``dist="t"`` (default) uses ``(1 + cluster_ratio) n_clusters - 2`` degrees of freedom.

    Parameters
    ----------
    odds_ratio : marginal odds ratio, treated vs control, > 0.
    risk_control : risk in the control arm, in (0, 1).
    n_clusters : clusters in the treated arm, k.
    cluster_size : mean participants per cluster, m.
    icc : ICC on the binary scale (Donner & Klar), or
    cv_between : coefficient of variation of true cluster risks (Hayes & Bennett).
    cv_cluster_size : CV of cluster sizes, >= 0.
    cluster_ratio : control clusters per treated cluster.
    alpha : two-sided significance level.
    scale : "log" (Wald test of the log odds ratio) or "difference" (risk difference).
    dist : "t", "normal" or "hayes-bennett".
    dropout : share of participants without the outcome.

    Returns
    -------
    float or ndarray : power.

    Examples
    --------
    >>> round(power_crt_binary(2.0, risk_control=0.15, n_clusters=10, cluster_size=20,
    ...                        icc=0.05), 3)
    0.453
    """
    return _power_crt("binary", odds_ratio, risk_control, n_clusters, cluster_size, icc,
                      cv_between, cv_cluster_size, cluster_ratio, 0.0, alpha, scale, dist,
                      dropout)  # fmt: skip


def power_crt_count(
    rate_ratio,
    *,
    rate_control,
    n_clusters,
    cluster_size,
    icc=None,
    cv_between=None,
    cv_cluster_size=0.0,
    cluster_ratio=1.0,
    overdispersion=0.0,
    alpha=0.05,
    scale="log",
    dist="t",
    dropout=0.0,
):
    """Power of a parallel cluster-randomised trial with a count (rate) outcome.

    ``cluster_size`` is the person-time (or people, for one count each) per cluster and
    ``rate_control`` the control arm's events per unit of it. With ``cv_between``,
    ``scale="difference"`` and ``dist="hayes-bennett"`` it is Hayes & Bennett's (1999)
    eq. (2) for rates solved for power::

        z_beta = |l1 - l0| sqrt(k - 1) / sqrt((l1 + l0) / y + k_cv^2 (l1^2 + l0^2))
                 - z_{1 - alpha/2}

    Parameters as :func:`power_crt_binary`, with ``rate_ratio`` (> 0), ``rate_control``
    (> 0) and ``overdispersion`` (per-person variance ``mu + overdispersion mu^2``; with an
    ``icc`` it is the ICC's share of that total).

    Examples
    --------
    >>> round(power_crt_count(0.625, rate_control=0.04, n_clusters=12, cluster_size=200,
    ...                       cv_between=0.25, scale="difference", dist="hayes-bennett"), 4)
    0.6366
    """
    return _power_crt("count", rate_ratio, rate_control, n_clusters, cluster_size, icc,
                      cv_between, cv_cluster_size, cluster_ratio, overdispersion, alpha, scale,
                      dist, dropout)  # fmt: skip


# --------------------------------------------------------------------------------------------
# individually randomised group treatment (partially nested) trial


def _power_irgt(kind, ratio, control_mean, n_groups, group_size, n_control, icc, cv_between,
                cv_group_size, overdispersion, alpha, scale, dist, dropout, treated_efficiency,
                control_efficiency):  # fmt: skip
    mu0, mu1, phi = _check_effect(kind, control_mean, ratio, overdispersion)
    icc, cv_between = _check_between(icc, cv_between)
    g = _check_range("n_groups", n_groups, 2.0, np.inf, high_open=True)
    m = _check_range("group_size", group_size, 0.0, np.inf, low_open=True, high_open=True)
    n_c = _check_range("n_control", n_control, 1.0, np.inf, low_open=True, high_open=True)
    cv = _check_range("cv_group_size", cv_group_size, 0.0, np.inf, high_open=True)
    alpha, completing = _check_options(scale, dist, alpha, dropout)
    if dist == "hayes-bennett":
        raise ValueError("dist='hayes-bennett' is for cluster-randomised trials; use 't'")
    if np.any(n_c * completing <= 1.0):
        raise UserError(
            "n_control * (1 - dropout) must exceed 1, got "
            f"n_control={n_control}, dropout={1 - completing}"
        )
    eff_t = _check_range("treated_efficiency", treated_efficiency, 0.0, 1.0, low_open=True)
    eff_c = _check_range("control_efficiency", control_efficiency, 0.0, 1.0, low_open=True)
    w1, tau2 = _components(kind, mu1, icc, cv_between, phi)
    v1 = (eff_t * w1 / (m * completing) + (1.0 + cv**2) * tau2) / g
    v0 = eff_c * _unit_var(kind, mu0, phi) / (n_c * completing)
    theta, var = _effect_and_var(kind, scale, mu0, mu1, v0, v1)
    # Satterthwaite df of the two arms' variances on the test's scale (Moerbeek & Wong 2008)
    s1, s0 = (v1, v0) if scale == "difference" else (
        v1 / _link_slope(kind, mu1) ** 2, v0 / _link_slope(kind, mu0) ** 2
    )  # fmt: skip
    df = (s1 + s0) ** 2 / (s1**2 / (g - 1.0) + s0**2 / (n_c * completing - 1.0))
    return _power(theta, var, df, alpha, dist)


_IRGT_DOC = """Power of an individually randomised group treatment (partially nested) trial
    with a {kind} outcome.

    The treated arm meets in ``n_groups`` groups of ``group_size``; the ``n_control``
    controls are not clustered. The design effect applies to the treated arm only
    (Roberts & Roberts 2005; Moerbeek & Wong 2008; as clusterPower's ``cpa.irgtt.binary``)::

        V_1 = (w_1 / m + (1 + cv^2) tau2_1) / G,      V_0 = s_0^2 / n_C

    (with ``icc``: ``V_1 = s_1^2 (1 + ((cv^2 + 1) m - 1) icc) / (G m)``), tested on the
    ``scale`` of the module docstring; ``dist="t"`` uses the Satterthwaite df
    ``(S_1 + S_0)^2 / (S_1^2 / (G - 1) + S_0^2 / (n_C - 1))`` of the two arms' variances
    ``S_a`` on that scale.

    ``treated_efficiency``, ``control_efficiency``: the share of each arm's individual
    variance left after adjustment for baseline covariates (1: no adjustment; e.g.
    ``1 - r^2`` for a baseline measure correlated ``r`` with the outcome); the group variance
    arises after baseline and is not reduced.

    Returns the power (float or ndarray).
    """


def power_irgt_binary(
    odds_ratio,
    *,
    risk_control,
    n_groups,
    group_size,
    n_control,
    icc=None,
    cv_between=None,
    cv_group_size=0.0,
    alpha=0.05,
    scale="log",
    dist="t",
    dropout=0.0,
    treated_efficiency=1.0,
    control_efficiency=1.0,
):
    return _power_irgt("binary", odds_ratio, risk_control, n_groups, group_size, n_control,
                       icc, cv_between, cv_group_size, 0.0, alpha, scale, dist, dropout,
                       treated_efficiency, control_efficiency)  # fmt: skip


def power_irgt_count(
    rate_ratio,
    *,
    rate_control,
    n_groups,
    group_size,
    n_control,
    icc=None,
    cv_between=None,
    cv_group_size=0.0,
    overdispersion=0.0,
    alpha=0.05,
    scale="log",
    dist="t",
    dropout=0.0,
    treated_efficiency=1.0,
    control_efficiency=1.0,
):
    return _power_irgt("count", rate_ratio, rate_control, n_groups, group_size, n_control,
                       icc, cv_between, cv_group_size, overdispersion, alpha, scale, dist,
                       dropout, treated_efficiency, control_efficiency)  # fmt: skip


power_irgt_binary.__doc__ = _IRGT_DOC.format(kind="binary")
power_irgt_count.__doc__ = _IRGT_DOC.format(kind="count")


# --------------------------------------------------------------------------------------------
# stepped wedge


def _power_sw(kind, ratio, control_mean, n_per_period, icc, cv_between, treatment_matrix,
              clusters_per_step, n_steps, overdispersion, alpha, scale, dist, dropout,
              efficiency):  # fmt: skip
    if treatment_matrix is None:
        if clusters_per_step is None:
            raise ValueError("give either treatment_matrix or clusters_per_step (with n_steps)")
        x = stepped_wedge_design(clusters_per_step, n_steps)
    else:
        if clusters_per_step is not None or n_steps is not None:
            raise ValueError("give either treatment_matrix or clusters_per_step/n_steps, not both")
        x = _check_treatment_matrix(treatment_matrix)
    mu0, mu1, phi = _check_effect(kind, control_mean, ratio, overdispersion)
    icc, cv_between = _check_between(icc, cv_between)
    n = _check_range("n_per_period", n_per_period, 0.0, np.inf, low_open=True, high_open=True)
    alpha, completing = _check_options(scale, dist, alpha, dropout)
    if dist == "hayes-bennett":
        raise ValueError("dist='hayes-bennett' is for cluster-randomised trials; use 'normal'")
    eff = _check_range("efficiency", efficiency, 0.0, 1.0, low_open=True)
    # Hussey & Hughes: one variance for every cell, the binomial (or count) variance at the
    # mean of the two arms' means; tau^2 from the ICC tau^2 / (tau^2 + sigma^2) as swCRTdesign
    mu_bar = (mu0 + mu1) / 2.0
    s2 = _unit_var(kind, mu_bar, phi)
    tau2 = icc / (1.0 - icc) * s2 if cv_between is None else (cv_between * mu0) ** 2
    theta = mu1 - mu0
    if scale == "log":  # linearised at the mean: the variances on the link scale
        slope2 = _link_slope(kind, mu_bar) ** 2
        s2, tau2 = s2 / slope2, tau2 / slope2
        theta = (special.logit(mu1) - special.logit(mu0)) if kind == "binary" else np.log(mu1 / mu0)
    var = stepped_wedge_variance(x, eff * s2 / (n * completing), tau2)
    n_clusters = x.shape[0]
    if dist == "t" and n_clusters < 3:
        raise UserError(f"dist='t' needs at least 3 clusters (df = I - 2), got {n_clusters}")
    return _power(theta, var, n_clusters - 2.0, alpha, dist)


_SW_DOC = """Power of a cross-sectional stepped-wedge trial with a {kind} outcome (Hussey &
    Hughes 2007).

    The variance of the effect is Hussey & Hughes' closed form
    (:func:`trialsim.power.analytic.stepped_wedge_variance`) with one within-cell variance for
    every cluster-period, the {variance} at the mean of the two arms' means ``mu_bar``
    (as Hussey & Hughes and swCRTdesign's ``swPwr(distn="{distn}")``), ``sigma^2 =
    s^2(mu_bar) / n_per_period``, and the between-cluster variance ``tau^2 = icc / (1 - icc)
    s^2(mu_bar)`` (``icc = tau^2 / (tau^2 + s^2)``) or ``(cv_between * control mean)^2``.
    ``scale="difference"`` tests the {difference}; ``scale="log"`` (default) the log {ratio},
    both variances divided by the squared slope of the link at ``mu_bar``. ``dist="normal"``
    (default, as Hussey & Hughes) or ``"t"`` on I - 2 df. ``efficiency``: share of the
    individual variance left after covariate adjustment.

    Returns the power (float or ndarray).
    """


def power_stepped_wedge_binary(
    odds_ratio,
    *,
    risk_control,
    n_per_period,
    icc=None,
    cv_between=None,
    treatment_matrix=None,
    clusters_per_step=None,
    n_steps=None,
    alpha=0.05,
    scale="log",
    dist="normal",
    dropout=0.0,
    efficiency=1.0,
):
    return _power_sw("binary", odds_ratio, risk_control, n_per_period, icc, cv_between,
                     treatment_matrix, clusters_per_step, n_steps, 0.0, alpha, scale, dist,
                     dropout, efficiency)  # fmt: skip


def power_stepped_wedge_count(
    rate_ratio,
    *,
    rate_control,
    n_per_period,
    icc=None,
    cv_between=None,
    treatment_matrix=None,
    clusters_per_step=None,
    n_steps=None,
    overdispersion=0.0,
    alpha=0.05,
    scale="log",
    dist="normal",
    dropout=0.0,
    efficiency=1.0,
):
    return _power_sw("count", rate_ratio, rate_control, n_per_period, icc, cv_between,
                     treatment_matrix, clusters_per_step, n_steps, overdispersion, alpha, scale,
                     dist, dropout, efficiency)  # fmt: skip


power_stepped_wedge_binary.__doc__ = _SW_DOC.format(
    kind="binary", variance="binomial variance mu (1 - mu)", distn="binomial",
    difference="risk difference", ratio="odds ratio",
)  # fmt: skip
power_stepped_wedge_count.__doc__ = _SW_DOC.format(
    kind="count", variance="variance mu + overdispersion mu^2", distn="poisson",
    difference="rate difference", ratio="rate ratio",
)  # fmt: skip
