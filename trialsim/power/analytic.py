"""Closed-form power for clustered group trials.

Three designs, each a pure function of its parameters, vectorised by numpy broadcasting:

* :func:`power_irgt` -- individually randomised group treatment (partially nested) trial:
  clustering in the treated arm only, Satterthwaite degrees of freedom, noncentral t.
* :func:`power_crt` -- parallel cluster-randomised trial with (possibly) variable cluster size,
  noncentral t on ``2 k - 2 - n_covariates`` degrees of freedom.
* :func:`power_stepped_wedge` -- cross-sectional stepped wedge, Hussey & Hughes (2007) closed
  form for the variance of the treatment effect.

Conventions shared by all three (nature, not design):

* ``effect`` is the difference in means (treated minus control) in outcome units; with
  ``sd=1`` it is a standardised effect.
* ``sd`` is the SD of individual outcomes around their group/cluster mean (sigma_e), the same
  in every arm. ``icc = sigma_g^2 / (sigma_g^2 + sigma_e^2)``, so the total SD of a clustered
  observation is ``sd / sqrt(1 - icc)``. If you know a total SD ``s_T`` instead, pass
  ``sd = s_T * sqrt(1 - icc)``.

Design adjustments accepted by every power function:

* ``baseline_corr`` (r): ANCOVA on a baseline measure multiplies every variance component by
  ``1 - r**2`` (Borm, Fransen & Lemmens 2007, J Clin Epidemiol 60:1234).
* ``dropout``: expected completers are ``n * (1 - dropout)`` for every person-level count
  (group, cluster and cluster-period sizes, control-arm size); groups and clusters are kept.
* ``compliance``: the intention-to-treat effect is ``compliance * effect`` when non-compliers
  get no benefit (ITT = compliance x CACE; Angrist, Imbens & Rubin 1996, JASA 91:444; Jo 2002,
  Psychol Methods 7:178), so the sample size needed grows by ``1 / compliance**2``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import special, stats

from trialsim.errors import UserError

__all__ = [
    "design_effect",
    "irgt_moments",
    "power_crt",
    "power_irgt",
    "power_stepped_wedge",
    "stepped_wedge_design",
    "stepped_wedge_variance",
]


# --------------------------------------------------------------------------------------------
# validation helpers


def _as_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if np.any(np.isnan(arr)):
        raise UserError(f"{name} must not be NaN, got {value!r}")
    return arr


def _check_range(
    name: str,
    value,
    low: float = -np.inf,
    high: float = np.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> np.ndarray:
    """Return ``value`` as a float array, or raise ValueError naming ``name`` and the range."""
    arr = _as_array(name, value)
    too_low = arr <= low if low_open else arr < low
    too_high = arr >= high if high_open else arr > high
    bad = too_low | too_high
    if np.any(bad):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        shown = value if arr.ndim == 0 else arr[bad].tolist()
        raise UserError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {shown}")
    return arr


def _check_common(sd, icc, alpha, baseline_corr, dropout, compliance):
    return (
        _check_range("sd", sd, 0.0, np.inf, low_open=True, high_open=True),
        _check_range("icc", icc, 0.0, 1.0, high_open=True),
        _check_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True),
        _check_range("baseline_corr", baseline_corr, -1.0, 1.0, low_open=True, high_open=True),
        _check_range("dropout", dropout, 0.0, 1.0, high_open=True),
        _check_range("compliance", compliance, 0.0, 1.0, low_open=True),
    )


def _scalar_or_array(x: np.ndarray):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------------------------
# shared pieces


def _power_t_two_sided(ncp, df, alpha, crit_scale=1.0):
    """Two-sided power of a t test: P(T' > t_crit) + P(T' < -t_crit), T' ~ nct(df, ncp).

    ``crit_scale``: the test's SE over the estimator's true SD (> 1 for a conservative model
    SE): the critical value on the scale of ``ncp`` is ``t_crit * crit_scale``.

    ``df = inf`` gives the normal approximation. The opposite (wrong-sign) tail is included,
    as in statsmodels' ``ttest_power``; it is negligible unless ncp is near zero.
    """
    ncp, df, alpha, crit_scale = np.broadcast_arrays(
        np.asarray(ncp, float),
        np.asarray(df, float),
        np.asarray(alpha, float),
        np.asarray(crit_scale, float),
    )
    out = np.empty(ncp.shape)
    normal = np.isinf(df)
    if np.any(normal):
        z = stats.norm.isf(alpha[normal] / 2.0) * crit_scale[normal]
        out[normal] = stats.norm.sf(z - ncp[normal]) + stats.norm.cdf(-z - ncp[normal])
    finite = ~normal
    if np.any(finite):
        d, c = df[finite], ncp[finite]
        crit = stats.t.isf(alpha[finite] / 2.0, d) * crit_scale[finite]
        # scipy.special's nctdtr is the CDF of the noncentral t; used directly because the
        # frozen-distribution wrappers return NaN for some negative noncentralities.
        # by symmetry of T'(ncp) and -T'(-ncp), on |ncp|: the tail beyond +crit plus the
        # wrong-sign tail below -crit; nctdtr returns NaN far in a tail, where the tail
        # probability is 0 (wrong sign) or the power 1 (|ncp| well beyond crit)
        a = np.abs(c)
        main = 1.0 - special.nctdtr(d, a, crit)
        main = np.where(np.isnan(main), (a > crit).astype(float), main)
        wrong = special.nctdtr(d, a, -crit)
        out[finite] = main + np.where(np.isnan(wrong), 0.0, wrong)
    return np.clip(out, 0.0, 1.0)


def _adjusted(effect, sd, baseline_corr, dropout, compliance):
    """The design adjustments of the module docstring, in one place for every design.

    Returns ``(itt_effect, residual_var, completing)``: the intention-to-treat effect
    ``compliance * effect``, the individual-level variance after ANCOVA on the baseline
    ``sd**2 * (1 - baseline_corr**2)``, and the share ``1 - dropout`` of each person-level count
    that completes follow-up.
    """
    return effect * compliance, sd**2 * (1.0 - baseline_corr**2), 1.0 - dropout


def design_effect(cluster_size, icc, cv_cluster_size=0.0):
    """Design effect for clusters of variable size (Eldridge, Ashby & Kerry 2006).

    ``DE = 1 + ((cv**2 + 1) * mean_size - 1) * icc``, which reduces to the Kish / Donner
    ``1 + (m - 1) * icc`` when every cluster has size ``m`` (``cv = 0``). It is the exact
    variance inflation of a cluster-size-weighted mean (individual-level analysis with
    unit weights) and conservative for minimum-variance weighting.

    Parameters
    ----------
    cluster_size : mean cluster size (participants per cluster), > 0.
    icc : intracluster correlation, in [0, 1).
    cv_cluster_size : coefficient of variation (SD / mean) of cluster size, >= 0.

    Returns
    -------
    float or ndarray : the variance ratio relative to individual randomisation.

    References
    ----------
    Eldridge SM, Ashby D, Kerry S. Sample size for cluster randomized trials: effect of
    coefficient of variation of cluster size and analysis method. Int J Epidemiol
    2006;35:1292-1300.

    Examples
    --------
    >>> round(design_effect(20, 0.05, 0.65), 4)
    2.3725
    """
    m = _check_range("cluster_size", cluster_size, 0.0, np.inf, low_open=True, high_open=True)
    rho = _check_range("icc", icc, 0.0, 1.0, high_open=True)
    cv = _check_range("cv_cluster_size", cv_cluster_size, 0.0, np.inf, high_open=True)
    return _scalar_or_array(1.0 + ((cv**2 + 1.0) * m - 1.0) * rho)


# --------------------------------------------------------------------------------------------
# individually randomised group treatment (partially nested) trial


def _irgt_moments(
    effect,
    n_groups,
    group_size,
    n_control,
    sd,
    icc,
    cv_group_size,
    baseline_corr,
    dropout,
    compliance,
    n_control_groups=None,
    control_icc=0.0,
    completers="expected",
    treated_var=0.0,
    efficiency=1.0,
    n_strata=None,
    *,
    parts=False,
    informative_share=None,
):
    """Noncentrality, Satterthwaite df, critical-value scale (the model SE over the
    estimator's true SD, see :func:`_power_t_two_sided`) and the control arm's share of the
    variance of the difference, of the IRGT Welch-type t statistic (no validation).

    ``completers="expected"``: every group keeps ``group_size * (1 - dropout)`` completers
    (Eldridge design effect for the size CV). ``"binomial"``: each group's completers are
    Binomial(size, 1 - dropout), sizes varying with the CV, and the treated-arm variance is
    the inverse of the expected GLS information (groups left without completers drop out of
    it and of the df). ``treated_var``: individual variance added in the treated arm only
    (e.g. the spread of the ITT effect over attendance), outcome units squared."""
    itt, var_e, completing = _adjusted(effect, sd, baseline_corr, dropout, compliance)
    m = group_size * completing  # expected completers per group
    n_c = n_control * completing
    var_t = var_e + treated_var * compliance**2
    n_t = n_groups * m  # expected treated completers
    if completers == "binomial":
        var_g = icc / (1.0 - icc) * var_e
        info, nonempty = _binomial_group_moments(
            group_size, cv_group_size, completing, var_g, var_t
        )
        v_treat = 1.0 / (n_groups * info)
        if parts:
            # the treated-arm variance a fit at the boundary (no group variance) reports: its
            # residual variance is pooled over the arms, so the treated arm's extra variance
            # enters with the treated share of completers
            var_pooled = var_e + treated_var * compliance**2 * n_t / (n_t + n_c)
            info0, _ = _binomial_group_moments(
                group_size, cv_group_size, completing, 0.0, var_pooled
            )
            v_treat0 = 1.0 / (n_groups * info0)
        share = nonempty if informative_share is None else informative_share
        n_groups = np.maximum(n_groups * share, 1.0 + 1e-9)
    else:
        # Eldridge et al.'s design effect written per group: (sigma_e^2 / m + (1 + cv^2)
        # sigma_g^2) / G with sigma_g^2 = icc / (1 - icc) sigma_e^2 (the same as
        # sigma_e^2 / (1 - icc) * DE / (m G) when treated_var = 0)
        v_treat = (var_t / m + (1.0 + cv_group_size**2) * icc / (1.0 - icc) * var_e) / n_groups
        v_treat0 = var_t / m / n_groups
    if n_control_groups is None:
        v_ctrl = var_e / n_c
        df_ctrl = n_c - 1.0
    else:  # attention-control groups: the control arm's own design effect
        m_c = n_c / n_control_groups
        de_c = 1.0 + ((cv_group_size**2 + 1.0) * m_c - 1.0) * control_icc
        v_ctrl = var_e / (1.0 - control_icc) * de_c / n_c
        df_ctrl = n_control_groups - 1.0
    # strata (municipalities) holding a single group: its contrast with the stratum's own
    # controls is one observation of sigma_g^2 + s^2/K_T + s^2/K_C, so that share of the
    # control variance is estimated on the groups' df too
    shared = 0.0 if n_strata is None else np.minimum(1.0, n_strata / n_groups)
    df = (v_treat + v_ctrl) ** 2 / (
        (v_treat + shared * v_ctrl) ** 2 / (n_groups - 1.0)
        + ((1.0 - shared) * v_ctrl) ** 2 / df_ctrl
    )
    if parts:
        return dict(
            itt=itt,
            v_treat=v_treat / efficiency,
            v_treat0=v_treat0 / efficiency,
            v_ctrl=v_ctrl / efficiency,
            shared=shared,
            df_groups=n_groups - 1.0,
            df_ctrl=df_ctrl,
            n_complete=n_t + n_c,
            # the pooled residual variance carries the treated arm's extra variance into the
            # control arm's model variance (binomial path, see below)
            v_model_extra=(
                treated_var * compliance**2 * n_t / (n_t + n_c) / n_c / efficiency
                if completers == "binomial"
                else 0.0 * n_c
            ),
        )
    v_treat, v_ctrl = v_treat / efficiency, v_ctrl / efficiency
    var_diff = v_treat + v_ctrl
    control_share = v_ctrl / var_diff
    if completers != "binomial":
        return itt / np.sqrt(var_diff), df, 1.0, control_share
    # The mixed model pools one residual variance over both arms, so the treated arm's extra
    # individual variance also enters the control arm's model variance (weighted by the
    # treated share of completers): the model SE, which sets the critical value, exceeds
    # the estimator's true SD, which sets the spread.
    n_t = n_groups * m  # (groups with completers, as before the small-sample model)
    v_model = var_diff + treated_var * compliance**2 * n_t / (n_t + n_c) / n_c
    return itt / np.sqrt(var_diff), df, np.sqrt(v_model / var_diff), control_share


#: Quadrature nodes of the small-sample model (:func:`_power_irgt_reml`): the between-group
#: mean square, the residual variance and the realised information.
_NODES_GROUP, _NODES_RESIDUAL, _NODES_INFO = 32, 8, 12


def _midpoint_quantiles(dist, n: int, *args) -> np.ndarray:
    """``n`` equal-probability nodes of ``dist`` (quantiles at (i + 1/2) / n) on a new last
    axis, broadcast over the distribution's array arguments ``args``."""
    u = (np.arange(n) + 0.5) / n
    return dist.ppf(u, *(np.asarray(a, float)[..., None] for a in args))


def _power_irgt_reml(parts: dict, alpha, n_fixed, info_cv, n_covariates=1):
    """Power of the REML mixed-model test of a partially nested trial in small samples.

    The textbook formula treats the variance of the difference as known up to a t with
    Satterthwaite df. The default analysis estimates the group variance by REML, truncates it
    at 0 (the boundary fit, then tested on the residual df), and the design itself -- how many
    of each group's members complete -- varies from trial to trial. Three integrals replace
    the plug-in, each over equal-probability quadrature nodes:

    1. the between-group mean square (balanced one-way ANOVA, Searle, Casella & McCulloch
       1992, ch. 3): the variance carried on the groups' df, ``V1 = v_T + s v_C`` (``s`` the
       share of the control variance carried on the groups' df, see ``n_strata``), is
       estimated as ``q V1`` with ``q ~ chi2(G' - 1) / (G' - 1)``, ``G'`` the groups that
       contribute; the REML group variance is ``max(0, .)``, so the estimate is
       ``max(q V1, u V1_0)``, ``V1_0`` the same variance with no group variance
       (``u V1_0`` is what the fit reports at the boundary); the boundary's probability
       ``P(q < u V1_0 / V1)`` is integrated exactly and the interior on nodes of q given
       ``q > u V1_0 / V1``, so power is smooth in every argument (solvers, priors);
    2. the residual variance: ``u ~ chi2(d_e) / d_e`` on ``d_e = N - p - (G' - 1)`` df (N
       completers, p = ``n_fixed`` fixed effects, the groups' own df removed) scales the
       individual-variance parts, ``V2 = (1 - s) v_C`` estimated as ``u V2``;
    3. the realised information (completers per group and stratum vary between trials): by
       Jensen's inequality power averaged over trials, E[power(I)], is below power at the
       expected information, power(E[I]); ``I / E[I]`` is taken as Gamma with mean 1 and CV
       ``info_cv`` (0: fixed), and the true variance of the estimate is ``V E[I] / I``.

    4. the estimated covariate slopes (the baseline and ``n_covariates - 1`` others): chance
       imbalance in a covariate between the arms adds ``k / (d_e - 1)`` of the variance, k
       covariates on ``d_e`` residual df -- the unconditional variance of the ANCOVA
       estimate with normal covariates is ``V (1 + k / (n - k - 3))`` on ``n - k - 2``
       residual df (Cochran 1957, Biometrics 13:261; Cox & McCullagh 1982, Biometrics
       38:541) -- in the estimate's variance and its model SE alike.

    The model's residual variance is pooled over the arms, so where the treated arm has
    extra individual variance (``treated_var``) the control-arm part of the model variance
    is the pooled one: in ``V2`` and, at the boundary, in ``V1_0``; the control variance
    carried on the groups' df is estimated through the between-group mean square itself.

    Given the nodes, the estimate is normal with its true variance ``V`` (independent of the
    variance estimates, as in normal-theory ANOVA), the model variance is
    ``V_hat = max(q V1, u V1_0) + u V2`` (times the same ``E[I] / I``) and the df are
    Satterthwaite's at the estimates, ``(V1_hat + V2_hat)^2 / (V1_hat^2 / (G' - 1) +
    V2_hat^2 / df_C)``, or ``N - p`` at the boundary (as lmerTest and the fitting engines do).
    Power is the average over the nodes of
    ``P(|Z + effect / sqrt(V)| > t_{1 - alpha/2}(df_hat) sqrt(V_hat / V))``.
    Checked against the simulated default analysis over the grid of ``scripts/power_grid.py``
    (``docs/power.md``).
    """
    itt = np.asarray(parts["itt"], float)
    shared = parts["shared"]
    # the model's control-arm variance uses the residual variance pooled over the arms
    v_ctrl_model = parts["v_ctrl"] + parts["v_model_extra"]
    v1 = parts["v_treat"] + shared * parts["v_ctrl"]
    v1_0 = parts["v_treat0"] + shared * v_ctrl_model
    v2 = (1.0 - shared) * parts["v_ctrl"]
    extra = (1.0 - shared) * parts["v_model_extra"]
    d1 = parts["df_groups"]
    resid_df = np.maximum(parts["n_complete"] - n_fixed, 1.0)
    d_e = np.maximum(resid_df - d1, 1.0)
    itt, v1, v1_0, v2, d1, d_c, resid_df, d_e, extra, alpha, info_cv = np.broadcast_arrays(
        itt,
        v1,
        v1_0,
        v2,
        d1,
        parts["df_ctrl"],
        resid_df,
        d_e,
        extra,
        np.asarray(alpha, float),
        np.asarray(info_cv, float),
    )
    var = v1 + v2
    covariate_inflation = 1.0 + n_covariates / np.maximum(d_e - 1.0, 1.0)
    u = _midpoint_quantiles(stats.chi2, _NODES_RESIDUAL, d_e) / d_e[..., None]  # (..., u)
    # the boundary is reached when q < q_b = u V1_0 / V1: its probability is integrated
    # exactly and the interior q > q_b on equal-probability nodes of q given q > q_b, so
    # power is smooth in every argument (no node jumps across the boundary)
    d1_ = d1[..., None]
    p_boundary = stats.chi2.cdf(u * (v1_0 / v1)[..., None] * d1_, d1_)  # (..., u)
    levels = (np.arange(_NODES_GROUP) + 0.5) / _NODES_GROUP
    levels = p_boundary[..., None, :] + (1.0 - p_boundary[..., None, :]) * levels[:, None]
    q = stats.chi2.ppf(np.minimum(levels, 1.0 - 1e-12), d1[..., None, None]) / d1[..., None, None]
    u = u[..., None, :]  # (..., q, u)
    v2_hat = u * (v2 + extra)[..., None, None]
    v1_hat = q * v1[..., None, None]
    df = (v1_hat + v2_hat) ** 2 / (
        v1_hat**2 / d1[..., None, None] + v2_hat**2 / d_c[..., None, None]
    )
    ratio = (v1_hat + v2_hat) / var[..., None, None]
    crit = stats.t.isf(alpha[..., None, None] / 2.0, df) * np.sqrt(ratio)  # (..., q, u)
    ratio_b = (u[..., 0, :] * (v1_0 + v2 + extra)[..., None]) / var[..., None]
    crit_b = stats.t.isf(alpha[..., None] / 2.0, resid_df[..., None]) * np.sqrt(ratio_b)
    # information relative to its mean: Gamma(shape 1/cv^2, scale cv^2); the variance of the
    # estimate and its model SE both scale with 1 / I
    cv = np.maximum(info_cv, 1e-6)
    rel = _midpoint_quantiles(stats.gamma, _NODES_INFO, 1.0 / cv**2, 0.0, cv**2)
    rel = np.where(info_cv[..., None] > 0, rel, 1.0)
    ncp = np.abs(itt / np.sqrt(var * covariate_inflation))[..., None] * np.sqrt(rel)

    def rejection(c, n):
        return stats.norm.sf(c - n) + stats.norm.cdf(-c - n)

    interior = rejection(crit[..., None], ncp[..., None, None, :]).mean(axis=(-3, -1))
    at_boundary = rejection(crit_b[..., None], ncp[..., None, :]).mean(axis=-1)
    power = (p_boundary * at_boundary + (1.0 - p_boundary) * interior).mean(axis=-1)
    return np.clip(power, 0.0, 1.0)


def _size_distribution(mean: float, cv: float) -> tuple[np.ndarray, np.ndarray]:
    """Whole group sizes and their probabilities with the given mean and CV: a normal
    discretised on 1, 2, ... (cv = 0: the two integers around the mean, mixed to keep it)."""
    if cv <= 0 or mean * cv < 0.3:
        lo = max(1.0, np.floor(mean))
        w = mean - lo if mean > lo else 0.0
        return np.array([lo, lo + 1.0]), np.array([1.0 - w, w])
    top = int(np.ceil(mean * (1.0 + 6.0 * cv))) + 1
    sizes = np.arange(1.0, top + 1.0)
    prob = stats.norm.pdf(sizes, mean, cv * mean)
    return sizes, prob / prob.sum()


def _binomial_group_moments(m, cv, completing, var_g, var_e):
    """Expected GLS information of one treated group, E[1 / (var_g + var_e / K)] over its
    completers K ~ Binomial(M, completing) (K = 0 contributes nothing), M its size with mean
    m and CV cv; and the share of groups with at least one completer."""

    def one(m_, cv_, p_, vg, ve):
        sizes, prob = _size_distribution(float(m_), float(cv_))
        k = np.arange(0.0, sizes[-1] + 1.0)
        pk = (prob[:, None] * stats.binom.pmf(k[None, :], sizes[:, None], p_)).sum(axis=0)
        info = np.zeros_like(k)
        info[1:] = 1.0 / (vg + ve / k[1:])
        return float(pk @ info), float(1.0 - pk[0])

    f = np.vectorize(one, otypes=[float, float])
    return f(m, cv, completing, var_g, var_e)


def power_irgt(
    effect,
    *,
    n_groups,
    group_size,
    n_control,
    icc,
    sd=1.0,
    cv_group_size=0.0,
    alpha=0.05,
    baseline_corr=0.0,
    dropout=0.0,
    compliance=1.0,
    n_control_groups=None,
    control_icc=0.0,
    completers="expected",
    treated_var=0.0,
    efficiency=1.0,
    n_strata=None,
    variance_estimation="known",
    n_fixed=3,
    info_cv=0.0,
    informative_share=None,
    n_covariates=1,
):
    """Power of an individually randomised group treatment (partially nested) trial.

    The treated arm is delivered in ``n_groups`` groups of ``group_size`` participants; the
    control arm has ``n_control`` unclustered participants. With sigma_e^2 = ``sd**2`` in both
    arms and sigma_g^2 = icc / (1 - icc) * sigma_e^2 in the treated arm only::

        v_T = (sigma_g^2 + sigma_e^2 / m) / G          (x DE_cv / DE_0 for variable m)
            = sigma_e^2 / (1 - icc) * (1 + ((cv^2 + 1) m - 1) icc) / (m G)
        v_C = sigma_e^2 / n_C
        df  = (v_T + v_C)^2 / (v_T^2 / (G - 1) + v_C^2 / (n_C - 1))     (Satterthwaite)
        power = P(|T'| > t_{1-alpha/2, df}),  T' ~ noncentral t(df, effect / sqrt(v_T + v_C))

    This is the Welch-type test of the treated group means against the control individuals
    (Roberts & Roberts 2005; Moerbeek & Wong 2008; Candlish et al. 2018). When the controls
    also meet in groups (attention control: ``n_control_groups`` groups, ICC
    ``control_icc``), each arm carries its own design effect::

        v_C = sigma_e^2 / (1 - icc_C) * (1 + ((cv^2 + 1) m_C - 1) icc_C) / n_C,  m_C = n_C / G_C

    and the control arm's Satterthwaite df are ``G_C - 1``. With ``icc=0``,
    ``group_size=1`` and ``n_groups == n_control`` it is exactly the pooled two-sample t test.

    Parameters
    ----------
    effect : difference in means, treated minus control (outcome units).
    n_groups : number of treatment groups, G >= 2 (whole numbers in practice).
    group_size : participants per group (mean if variable), m > 0.
    n_control : participants in the control arm, n_C, with n_C * (1 - dropout) > 1.
    icc : treated-arm intragroup correlation sigma_g^2 / (sigma_g^2 + sigma_e^2), in [0, 1).
    sd : individual-level SD sigma_e (outcome units), > 0.
    cv_group_size : coefficient of variation of group size, >= 0 (Eldridge et al. 2006 design
        effect applied to the treated arm).
    alpha : two-sided significance level.
    baseline_corr, dropout, compliance : design adjustments, see the module docstring.
    n_control_groups : groups in the control arm (attention control), >= 2; ``None``: the
        controls are not clustered.
    control_icc : the control groups' intragroup correlation, in [0, 1).
    completers : "expected" (default): every group keeps ``group_size * (1 - dropout)``
        completers, the textbook formula above. "binomial": each group's completers are
        Binomial(size, 1 - dropout) with sizes varying by ``cv_group_size`` (a discretised
        normal), ``v_T = 1 / (G E[1 / (sigma_g^2 + sigma_e^2 / K)])`` (the expected GLS
        information, groups with K = 0 giving none) and the treated df ``G P(K >= 1) - 1``.
        Heavy attrition leaves few completers per group; by Jensen's inequality the expected
        information is below the information at the expected size, so this is the lower,
        realistic power (it matches the simulated mixed-model power, see
        ``scripts/power_grid.py``).
    treated_var : individual-level variance added in the treated arm only (outcome units
        squared), e.g. the spread of the ITT effect over participants' attendance, >= 0.
    efficiency : information of the analysis relative to the design above, in (0, 1]; the
        variance of the difference is divided by it (e.g. the loss from comparing within
        strata with few completers each, see :mod:`trialsim.power.from_scenario`).
    n_strata : fixed strata (municipalities) the groups are spread over, or None. A share
        ``min(1, n_strata / n_groups)`` of the control variance is then carried on the
        groups' ``G - 1`` df in the Satterthwaite formula (with one group per stratum the
        whole contrast is estimated from G group-vs-own-controls contrasts).
    variance_estimation : "known" (default): the textbook formula above, the variance
        components plugged in. "reml": the small-sample power of the REML mixed-model test
        -- the estimated group variance truncated at 0 (boundary fits tested on the residual
        df), the estimated residual variance, and the spread of the realised information
        between trials (``info_cv``) integrated over, see :func:`_power_irgt_reml`. It is
        what the scenario path uses (:mod:`trialsim.power.from_scenario`).
    n_fixed : fixed effects of the analysis model ("reml"): intercept, treatment, baseline,
        strata and covariates (3: intercept, treatment, baseline).
    n_covariates : covariates with an estimated slope, the baseline included ("reml"), >= 0.
    info_cv : coefficient of variation of the realised information between trials ("reml"),
        >= 0; 0 treats the expected completers as fixed.
    informative_share : share of the groups that contribute to the estimate (they have
        completers, and their stratum has control completers), in (0, 1]; None: the share
        with at least one completer (``completers="binomial"``) or 1.

    Returns
    -------
    float or ndarray : power, broadcast over all array arguments.

    References
    ----------
    Roberts C, Roberts SA. Design and analysis of clinical trials with clustering effects due
    to treatment. Clin Trials 2005;2:152-162.
    Moerbeek M, Wong WK. Sample size formulae for trials comparing group and individual
    treatments in a multilevel model. Stat Med 2008;27:3035-3051.
    Baldwin SA, Bauer DJ, Stice E, Rohde P. Evaluating models for partially clustered designs.
    Psychol Methods 2011;16:149-165.
    Candlish J et al. Appropriate statistical methods for analysing partially nested randomised
    controlled trials with continuous outcomes. BMC Med Res Methodol 2018;18:105.

    Examples
    --------
    >>> round(power_irgt(0.4, n_groups=10, group_size=8, n_control=80, icc=0.05), 3)
    0.599
    """
    if variance_estimation not in ("known", "reml"):
        raise ValueError(
            f"variance_estimation must be 'known' or 'reml', got {variance_estimation!r}"
        )
    design = {k: v for k, v in locals().items() if k not in REML_ARGUMENTS}
    if variance_estimation == "known":
        m = irgt_moments(**design)
        return _scalar_or_array(_power_t_two_sided(m.ncp, m.df, m.alpha, m.crit_scale))
    n_fixed = _check_range("n_fixed", n_fixed, 1.0, np.inf, high_open=True)
    info_cv = _check_range("info_cv", info_cv, 0.0, np.inf, high_open=True)
    n_cov = _check_range("n_covariates", n_covariates, 0.0, np.inf, high_open=True)
    args, share, alpha = _validated_irgt(design)
    parts = _irgt_moments(*args, parts=True, informative_share=share)
    return _scalar_or_array(_power_irgt_reml(parts, alpha, n_fixed, info_cv, n_cov))


#: power_irgt's arguments of the small-sample REML model (not of the design)
REML_ARGUMENTS = ("variance_estimation", "n_fixed", "info_cv", "n_covariates")


class IrgtMoments(NamedTuple):
    """The IRGT t statistic's moments (:func:`irgt_moments`), broadcast arrays."""

    ncp: np.ndarray  # noncentrality: the ITT effect over the estimator's true SD
    df: np.ndarray  # Satterthwaite df
    crit_scale: np.ndarray  # model SE over the true SD (the critical value's scale)
    control_share: np.ndarray  # the control arm's share of the variance of the difference
    alpha: np.ndarray


def irgt_moments(
    effect,
    *,
    n_groups,
    group_size,
    n_control,
    icc,
    sd=1.0,
    cv_group_size=0.0,
    alpha=0.05,
    baseline_corr=0.0,
    dropout=0.0,
    compliance=1.0,
    n_control_groups=None,
    control_icc=0.0,
    completers="expected",
    treated_var=0.0,
    efficiency=1.0,
    n_strata=None,
    informative_share=None,
) -> IrgtMoments:
    """The moments behind :func:`power_irgt` (same arguments, validated the same way).

    ``control_share`` is what several contrasts against one control arm need: two such
    contrasts share the control mean, so their correlation is the product of the square roots
    of their control shares (with equal variances and no groups,
    ``sqrt(n_1 n_2 / ((n_1 + n_0) (n_2 + n_0)))``; Dunnett 1955), see
    :mod:`trialsim.power.analytic_arms`.
    """
    args, informative_share, alpha = _validated_irgt(locals())
    ncp, df, scale, share = _irgt_moments(*args, informative_share=informative_share)
    return IrgtMoments(ncp, df, np.broadcast_to(scale, np.shape(ncp)), share, alpha)


def _validated_irgt(a: dict):
    """:func:`irgt_moments`' arguments ``a`` (by name) checked: ``(args, informative_share,
    alpha)`` with ``args`` the positional arguments of :func:`_irgt_moments`."""
    eff = _as_array("effect", a["effect"])
    g = _check_range("n_groups", a["n_groups"], 2.0, np.inf, high_open=True)
    m = _check_range("group_size", a["group_size"], 0.0, np.inf, low_open=True, high_open=True)
    n_c = _check_range("n_control", a["n_control"], 1.0, np.inf, low_open=True, high_open=True)
    sd, icc, alpha, r, drop, comp = _check_common(
        a["sd"], a["icc"], a["alpha"], a["baseline_corr"], a["dropout"], a["compliance"]
    )
    cv = _check_range("cv_group_size", a["cv_group_size"], 0.0, np.inf, high_open=True)
    if np.any(n_c * (1.0 - drop) <= 1.0):
        raise UserError(
            "n_control * (1 - dropout) must exceed 1 (control-arm variance needs 2 completers), "
            f"got n_control={a['n_control']}, dropout={a['dropout']}"
        )
    n_control_groups, control_icc = a["n_control_groups"], a["control_icc"]
    if n_control_groups is not None:
        n_control_groups = _check_range("n_control_groups", n_control_groups, 2.0, np.inf)
        control_icc = _check_range("control_icc", control_icc, 0.0, 1.0, high_open=True)
    completers = a["completers"]
    if completers not in ("expected", "binomial"):
        raise ValueError(f"completers must be 'expected' or 'binomial', got {completers!r}")
    extra = _check_range("treated_var", a["treated_var"], 0.0, np.inf, high_open=True)
    efficiency = _check_range("efficiency", a["efficiency"], 0.0, 1.0, low_open=True)
    share = a["informative_share"]
    if share is not None:
        share = _check_range("informative_share", share, 0.0, 1.0, low_open=True)
    args = (eff, g, m, n_c, sd, icc, cv, r, drop, comp, n_control_groups, control_icc)
    return (*args, completers, extra, efficiency, a["n_strata"]), share, alpha


# --------------------------------------------------------------------------------------------
# parallel cluster-randomised trial


def power_crt(
    effect,
    *,
    n_clusters,
    cluster_size,
    icc,
    sd=1.0,
    cv_cluster_size=0.0,
    n_covariates=0,
    alpha=0.05,
    baseline_corr=0.0,
    dropout=0.0,
    compliance=1.0,
    cluster_ratio=1.0,
):
    """Power of a two-arm parallel cluster-randomised trial with ``n_clusters`` per arm.

    ::

        Var(diff) = sigma_T^2 * DE / m * (1 / k + 1 / (r k)),   sigma_T^2 = sd^2 / (1 - icc)
        DE = 1 + ((cv^2 + 1) m - 1) icc                       (Eldridge et al. 2006)
        df = k + r k - 2 - n_covariates

    with ``r = cluster_ratio`` control clusters per treated cluster (1: equal arms, then
    ``Var(diff) = 2 sigma_T^2 DE / (k m)`` and ``df = 2 k - 2 - n_covariates``).
        power = P(|T'| > t_{1-alpha/2, df}),  T' ~ noncentral t(df, effect / sqrt(Var(diff)))

    With ``icc=0`` and ``cluster_size=1`` this is the pooled two-sample t test.

    Parameters
    ----------
    effect : difference in means, treated minus control (outcome units).
    n_clusters : clusters per arm (the treated arm when ``cluster_ratio != 1``), k, with
        (1 + r) k - 2 - n_covariates >= 1.
    cluster_size : mean participants per cluster, m > 0.
    icc : intracluster correlation, in [0, 1).
    sd : individual-level (within-cluster) SD sigma_e, > 0. The total SD is sd / sqrt(1 - icc).
    cv_cluster_size : coefficient of variation of cluster size, >= 0.
    n_covariates : cluster-level covariates, each costing one degree of freedom.
    alpha : two-sided significance level.
    baseline_corr, dropout, compliance : design adjustments, see the module docstring.
    cluster_ratio : control clusters per treated cluster, r > 0 (e.g. 5/4 for 4 treated and 5
        control municipalities); solving for ``n_clusters`` keeps the ratio.

    Returns
    -------
    float or ndarray : power, broadcast over all array arguments.

    References
    ----------
    Donner A, Klar N. Design and Analysis of Cluster Randomization Trials in Health Research.
    London: Arnold, 2000 (chapter 5).
    Eldridge SM, Ashby D, Kerry S. Int J Epidemiol 2006;35:1292-1300.

    Examples
    --------
    >>> round(power_crt(0.3, n_clusters=15, cluster_size=20, icc=0.05), 3)
    0.697
    """
    eff = _as_array("effect", effect)
    k = _check_range("n_clusters", n_clusters, 1.0, np.inf, low_open=True, high_open=True)
    m = _check_range("cluster_size", cluster_size, 0.0, np.inf, low_open=True, high_open=True)
    sd, icc, alpha, r, drop, comp = _check_common(
        sd, icc, alpha, baseline_corr, dropout, compliance
    )
    cv = _check_range("cv_cluster_size", cv_cluster_size, 0.0, np.inf, high_open=True)
    n_cov = _check_range("n_covariates", n_covariates, 0.0, np.inf, high_open=True)
    ratio = _check_range("cluster_ratio", cluster_ratio, 0.0, np.inf, low_open=True, high_open=True)
    df = (1.0 + ratio) * k - 2.0 - n_cov
    if np.any(df < 1.0):
        raise UserError(
            "n_clusters is too small: (1 + cluster_ratio) * n_clusters - 2 - n_covariates must "
            f"be >= 1, got n_clusters={n_clusters}, n_covariates={n_covariates}"
        )
    itt, var_e, completing = _adjusted(eff, sd, r, drop, comp)
    m_done = m * completing
    de = 1.0 + ((cv**2 + 1.0) * m_done - 1.0) * icc
    var_diff = var_e / (1.0 - icc) * de / m_done * (1.0 / k + 1.0 / (ratio * k))
    ncp = itt / np.sqrt(var_diff)
    return _scalar_or_array(_power_t_two_sided(ncp, df, alpha))


# --------------------------------------------------------------------------------------------
# stepped wedge (Hussey & Hughes 2007)


def stepped_wedge_design(clusters_per_step, n_steps=None) -> np.ndarray:
    """Standard cross-sectional stepped-wedge treatment matrix X (clusters x periods, 0/1).

    ``n_steps`` waves switch to treatment one period apart after one all-control baseline
    period, so there are ``n_steps + 1`` periods. ``clusters_per_step`` is either an int (the
    same for every wave, then ``n_steps`` is required) or a sequence with one count per wave,
    like ``swDsn(c(6, 6, 6, 6))`` in the R package swCRTdesign.

    Examples
    --------
    >>> stepped_wedge_design(1, n_steps=2).tolist()
    [[0, 1, 1], [0, 0, 1]]
    """
    if np.ndim(clusters_per_step) == 0:
        if n_steps is None:
            raise UserError("n_steps is required when clusters_per_step is a single number")
        _check_range("n_steps", n_steps, 1.0, np.inf, high_open=True)
        if int(n_steps) != n_steps:
            raise UserError(f"n_steps must be a whole number, got {n_steps}")
        counts = [clusters_per_step] * int(n_steps)
    else:
        counts = list(clusters_per_step)
        if n_steps is not None and n_steps != len(counts):
            raise UserError(
                f"n_steps={n_steps} disagrees with len(clusters_per_step)={len(counts)}"
            )
    for c in counts:
        _check_range("clusters_per_step", c, 1.0, np.inf, high_open=True)
        if int(c) != c:
            raise UserError(f"clusters_per_step must be whole numbers, got {c}")
    n_periods = len(counts) + 1
    rows = [
        [1 if t > step else 0 for t in range(n_periods)]
        for step, c in enumerate(counts)
        for _ in range(int(c))
    ]
    return np.asarray(rows, dtype=int)


def _check_treatment_matrix(treatment_matrix) -> np.ndarray:
    x = np.asarray(treatment_matrix, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise UserError(
            "treatment_matrix must be a clusters x periods matrix with at least 2 of each, "
            f"got shape {x.shape}"
        )
    if not np.all((x == 0) | (x == 1)):
        raise UserError("treatment_matrix must contain only 0 (control) and 1 (treated)")
    return x


def stepped_wedge_variance(treatment_matrix, cluster_period_var, between_cluster_var):
    """Variance of the treatment effect in a cross-sectional stepped wedge (Hussey & Hughes).

    Model: ``Y_it = mu + beta_t + theta X_it + a_i + e_it`` for cluster-period means, with
    fixed period effects, ``a_i ~ N(0, tau^2)`` and ``e_it ~ N(0, sigma^2)`` where
    ``sigma^2 = sigma_e^2 / n`` is the variance of a cluster-period mean of n people. The GLS
    variance of theta-hat is ::

        Var = I sigma^2 (sigma^2 + T tau^2) /
              ((I U - W) sigma^2 + (U^2 + I T U - T W - I V) tau^2)

    with ``U = sum X``, ``W = sum_t (sum_i X_it)^2``, ``V = sum_i (sum_t X_it)^2``.

    Parameters
    ----------
    treatment_matrix : (I, T) array of 0/1, treatment status of cluster i in period t.
    cluster_period_var : sigma^2, variance of a cluster-period mean (outcome units squared).
    between_cluster_var : tau^2, between-cluster variance (outcome units squared).

    References
    ----------
    Hussey MA, Hughes JP. Design and analysis of stepped wedge cluster randomized trials.
    Contemp Clin Trials 2007;28:182-191 (equation 8).
    """
    x = _check_treatment_matrix(treatment_matrix)
    s2 = _check_range("cluster_period_var", cluster_period_var, 0.0, np.inf, low_open=True)
    t2 = _check_range("between_cluster_var", between_cluster_var, 0.0, np.inf)
    n_clusters, n_periods = x.shape
    u = x.sum()
    w = np.sum(x.sum(axis=0) ** 2)
    v = np.sum(x.sum(axis=1) ** 2)
    denom_sigma = n_clusters * u - w
    denom_tau = u**2 + n_clusters * n_periods * u - n_periods * w - n_clusters * v
    denom = denom_sigma * s2 + denom_tau * t2
    if np.any(denom <= 0):
        raise UserError(
            "treatment_matrix does not identify the treatment effect (no within-period "
            "contrast between treated and control clusters)"
        )
    return _scalar_or_array(n_clusters * s2 * (s2 + n_periods * t2) / denom)


def power_stepped_wedge(
    effect,
    *,
    n_per_period,
    icc,
    sd=1.0,
    treatment_matrix=None,
    clusters_per_step=None,
    n_steps=None,
    alpha=0.05,
    dist="normal",
    baseline_corr=0.0,
    dropout=0.0,
    compliance=1.0,
):
    """Power of a cross-sectional stepped-wedge trial (Hussey & Hughes 2007).

    The variance comes from :func:`stepped_wedge_variance` with
    ``sigma^2 = sd^2 / n_per_period`` and ``tau^2 = icc / (1 - icc) * sd^2``. Power is ::

        dist="normal" (as Hussey & Hughes and swCRTdesign::swPwr):
            Phi(|theta| / se - z_{1-alpha/2}) + Phi(-|theta| / se - z_{1-alpha/2})
        dist="t": the same with a noncentral t on I - 2 degrees of freedom (I clusters),
            a small-sample correction for few clusters.

    Parameters
    ----------
    effect : difference in means, treated minus control (outcome units).
    n_per_period : participants measured per cluster per period, > 0.
    icc : within-period intracluster correlation tau^2 / (tau^2 + sigma_e^2), in [0, 1).
    sd : individual-level SD sigma_e, > 0.
    treatment_matrix : (I, T) 0/1 treatment matrix X; or give ``clusters_per_step`` (and
        ``n_steps``) for the standard design of :func:`stepped_wedge_design`.
    alpha : two-sided significance level.
    dist : "normal" (default) or "t".
    baseline_corr, dropout, compliance : design adjustments, see the module docstring.

    Returns
    -------
    float or ndarray : power, broadcast over effect, n_per_period, icc, sd, alpha and the
    adjustments (the treatment matrix itself is a single matrix).

    References
    ----------
    Hussey MA, Hughes JP. Contemp Clin Trials 2007;28:182-191.
    Hemming K, Haines TP, Chilton PJ, Girling AJ, Lilford RJ. The stepped wedge cluster
    randomised trial: rationale, design, analysis, and reporting. BMJ 2015;350:h391.

    Examples
    --------
    >>> round(power_stepped_wedge(0.3, n_per_period=10, icc=0.05, clusters_per_step=3,
    ...                           n_steps=4), 3)
    0.591
    """
    if treatment_matrix is None:
        if clusters_per_step is None:
            raise UserError("give either treatment_matrix or clusters_per_step (with n_steps)")
        x = stepped_wedge_design(clusters_per_step, n_steps)
    else:
        if clusters_per_step is not None or n_steps is not None:
            raise UserError("give either treatment_matrix or clusters_per_step/n_steps, not both")
        x = _check_treatment_matrix(treatment_matrix)
    if dist not in ("normal", "t"):
        raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")
    eff = _as_array("effect", effect)
    n = _check_range("n_per_period", n_per_period, 0.0, np.inf, low_open=True, high_open=True)
    sd, icc, alpha, r, drop, comp = _check_common(
        sd, icc, alpha, baseline_corr, dropout, compliance
    )
    itt, var_e, completing = _adjusted(eff, sd, r, drop, comp)
    var = stepped_wedge_variance(x, var_e / (n * completing), icc / (1.0 - icc) * var_e)
    ncp = itt / np.sqrt(var)
    n_clusters = x.shape[0]
    if dist == "t" and n_clusters < 3:
        raise UserError(f"dist='t' needs at least 3 clusters (df = I - 2), got {n_clusters}")
    df = np.inf if dist == "normal" else n_clusters - 2.0
    return _scalar_or_array(_power_t_two_sided(ncp, df, alpha))
