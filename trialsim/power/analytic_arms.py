"""Analytic power of the decisions over several arms compared with one reference arm.

With ``K`` active arms each compared with the reference arm, contrast ``j``'s t statistic is
``T_j = (Z_j + delta_j) / s``: ``Z`` multivariate normal with the contrasts' correlation,
``delta_j`` its noncentrality (the ITT effect over the estimator's SD, from the two-arm
formula, :func:`trialsim.power.analytic.irgt_moments`) and ``s = sqrt(chi2_nu / nu)`` one
scale shared by all contrasts (the multivariate noncentral t, "Kshirsagar" type in R's
mvtnorm). The contrasts share the reference arm's mean, so their covariance is its variance
and their correlation the product of the square roots of each contrast's reference-arm
variance share: with equal variances and no groups ``sqrt(n_1 n_2 / ((n_1 + n_0)(n_2 + n_0)))``
(Dunnett 1955, JASA 50:1096); with groups each arm's design effect sets its variance.

Contrast ``j`` is rejected when ``|T_j| > c_j``:

* ``none``: ``c_j`` the two-sided t critical value at alpha on contrast j's own df;
* ``bonferroni``: the same at ``alpha / K``. Holm's "any arm" decision is exactly
  Bonferroni's (Holm rejects something iff the smallest p < alpha / K); Holm's "all arms"
  power is at least Bonferroni's;
* ``dunnett``: one ``c`` with ``P(max |T| < c) = 1 - alpha`` under no effect
  (:func:`trialsim.analyse.multiplicity.dunnett_critical`), as the simulated decisions.

Decisions: ``each`` (the smallest per-contrast power: every arm's question answered on its
own), ``any`` (at least one arm significant) and ``all`` (every arm significant). The
correlation ``r_i r_j`` has one factor, ``Z_j = r_j U + sqrt(1 - r_j^2) E_j`` with ``U``,
``E_j`` independent standard normals, so given ``U`` and ``s`` the contrasts are independent
and every joint probability is a product of normal probabilities averaged over ``U``
(Gauss-Hermite) and ``s`` (:func:`trialsim.analyse.multiplicity.t_scale_nodes`) -- Dunnett's
(1955) own reduction, deterministic and fast enough to solve for a sample size. The shared df
``nu`` is the smallest of the contrasts' Satterthwaite df (the simulated Dunnett test's
choice); per-contrast powers ("each" unadjusted and Bonferroni) use each contrast's own df, as
the one-contrast formula does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import special, stats

from trialsim.analyse.multiplicity import dunnett_critical, t_scale_nodes
from trialsim.errors import UserError
from trialsim.power.analytic import REML_ARGUMENTS, _power_t_two_sided, irgt_moments

ADJUSTMENTS = ("none", "bonferroni", "dunnett")
DECISIONS = ("each", "any", "all")

_HERMITE = 96  # Gauss-Hermite nodes over the shared factor U


@dataclass(frozen=True)
class Contrasts:
    """The K contrasts of a multi-arm trial for the analytic decisions (arrays of length K).

    ``ncp`` the noncentralities, ``df`` the Satterthwaite df, ``crit_scale`` each test's model
    SE over the estimator's true SD (critical values are multiplied by it), ``loading`` the
    square roots of the reference arm's variance shares (the contrasts' correlation is
    ``loading_i loading_j``), ``alpha`` the two-sided level."""

    arms: tuple[str, ...]
    ncp: np.ndarray
    df: np.ndarray
    crit_scale: np.ndarray
    loading: np.ndarray
    alpha: float

    @property
    def corr(self) -> np.ndarray:
        return contrast_correlation(self.loading**2)

    @property
    def common_df(self) -> float:
        return float(np.min(self.df))


def contrast_correlation(control_share) -> np.ndarray:
    """Correlation of contrasts sharing the reference arm: ``sqrt(share_i share_j)`` off the
    diagonal, ``share_j`` the reference arm's share of contrast j's variance."""
    r = np.sqrt(np.asarray(control_share, dtype=float))
    corr = np.outer(r, r)
    np.fill_diagonal(corr, 1.0)
    return corr


def from_irgt_parameters(arms, params: list[dict], alpha: float) -> Contrasts:
    """The contrasts from each arm's :func:`~trialsim.power.analytic.power_irgt` keywords
    (one dict per active arm, all against the same reference arm)."""
    # the decisions use the t statistic's moments at the design's variances: the small-sample
    # REML model of the scenario path (power_irgt's variance_estimation) has no such moments
    design = [{k: v for k, v in p.items() if k not in REML_ARGUMENTS} for p in params]
    moments = [irgt_moments(**{**p, "alpha": alpha}) for p in design]
    return Contrasts(
        arms=tuple(arms),
        ncp=np.array([float(m.ncp) for m in moments]),
        df=np.array([float(m.df) for m in moments]),
        crit_scale=np.array([float(m.crit_scale) for m in moments]),
        loading=np.sqrt([float(m.control_share) for m in moments]),
        alpha=alpha,
    )


def _acceptance(half_width, ncp, loading, df: float):
    """``P(|Z_j + ncp_j| < half_width_j s | U, s)`` on the grid of ``U`` (Gauss-Hermite) and
    ``s`` nodes: (n_s, n_u, K), with the grid's weights (n_s, n_u)."""
    w = np.atleast_1d(np.asarray(half_width, dtype=float))
    ncp = np.atleast_1d(np.asarray(ncp, dtype=float))
    r = np.atleast_1d(np.asarray(loading, dtype=float))
    s, ws = t_scale_nodes(df)
    u, wu = hermegauss(_HERMITE)
    wu = wu / wu.sum()
    e = np.sqrt(1.0 - r**2)
    centre = ncp + r * u[:, None]  # (n_u, K)
    top = (w * s[:, None, None] - centre) / e
    bottom = (-w * s[:, None, None] - centre) / e
    return special.ndtr(top) - special.ndtr(bottom), np.outer(ws, wu)


def rectangle_probability(half_width, ncp, loading, df: float) -> float:
    """``P(|Z_j + ncp_j| < half_width_j s for every j)``, ``Z`` normal with correlation
    ``loading_i loading_j`` off the diagonal, ``s = sqrt(chi2_df / df)`` (df inf: ``s = 1``):
    the multivariate noncentral t rectangle probability (R: ``mvtnorm::pmvt(-w, w, delta =
    ncp, df = df, corr = R, type = "Kshirsagar")``)."""
    accept, weight = _acceptance(half_width, ncp, loading, df)
    return float(np.clip(np.sum(weight * accept.prod(axis=-1)), 0.0, 1.0))


def _every_rejected(half_width, ncp, loading, df: float) -> float:
    accept, weight = _acceptance(half_width, ncp, loading, df)
    return float(np.clip(np.sum(weight * (1.0 - accept).prod(axis=-1)), 0.0, 1.0))


def critical_values(c: Contrasts, adjustment: str) -> np.ndarray:
    """Each contrast's critical value of ``|T_j|`` (on the scale of ``ncp``) after
    ``adjustment``."""
    k = len(c.ncp)
    if adjustment == "dunnett":
        base = np.full(k, dunnett_critical(c.corr, c.common_df, 1.0 - c.alpha))
    elif adjustment in ("none", "bonferroni"):
        level = c.alpha / (k if adjustment == "bonferroni" else 1)
        base = stats.t.isf(level / 2.0, c.df)
    else:
        raise ValueError(f"adjustment {adjustment!r}: choose one of {', '.join(ADJUSTMENTS)}")
    return base * c.crit_scale


def decision_power(c: Contrasts, decision: str, adjustment: str = "none") -> float:
    """The probability of ``decision`` (``each``, ``any``, ``all``; see the module
    docstring) after ``adjustment`` (``none``, ``bonferroni``, ``dunnett``)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r}: choose one of {', '.join(DECISIONS)}")
    crit = critical_values(c, adjustment)
    if decision == "each":
        return min(contrast_powers(c, adjustment, crit))
    if decision == "any":
        return 1.0 - rectangle_probability(crit, c.ncp, c.loading, c.common_df)
    return _every_rejected(crit, c.ncp, c.loading, c.common_df)


def contrast_powers(c: Contrasts, adjustment: str, crit=None) -> list[float]:
    """Each contrast's power after ``adjustment``: on its own df for ``none`` and
    ``bonferroni`` (the one-contrast formula at alpha or alpha / K), on the shared df for
    ``dunnett``."""
    crit = critical_values(c, adjustment) if crit is None else crit
    if adjustment == "dunnett":
        return [
            1.0 - rectangle_probability(crit[j], c.ncp[j], c.loading[j], c.common_df)
            for j in range(len(c.ncp))
        ]
    level = c.alpha / (len(c.ncp) if adjustment == "bonferroni" else 1)
    return [
        float(_power_t_two_sided(c.ncp[j], c.df[j], level, c.crit_scale[j]))
        for j in range(len(c.ncp))
    ]


def decision_table(c: Contrasts) -> dict:
    """Every decision after every adjustment, with the contrasts' correlation and the shared
    df (the JSON of ``trialsim power`` on three or more arms)."""
    table = {
        adj: {
            "contrast_power": contrast_powers(c, adj),
            **{d: decision_power(c, d, adj) for d in DECISIONS},
        }
        for adj in ADJUSTMENTS
    }
    return {
        "arms": list(c.arms),
        "adjustments": table,
        "correlation": c.corr.tolist(),
        "df": c.common_df,
        "alpha": c.alpha,
    }


def scenario_parameters(s, outcome: str | None = None) -> list[dict]:
    """Each active arm's :func:`~trialsim.power.analytic.power_irgt` keywords against the
    reference arm of scenario ``s`` (:func:`trialsim.power.from_scenario.analytic_parameters`);
    ValueError when the scenario's formula is not the individually randomised one (the only
    one with 3+ arms)."""
    from trialsim.power.from_scenario import analytic_parameters

    params = []
    for arm in s.arm_labels[1:]:
        formula, p = analytic_parameters(s, outcome, arm)
        if formula != "irgt":
            raise UserError(
                f"analytic decisions over {s.n_arms} arms need an individually randomised "
                f"design (the {formula} formula compares two arms): use --method simulation"
            )
        params.append(p)
    return params


def scenario_contrasts(s, outcome: str | None = None, alpha: float = 0.05) -> Contrasts:
    """Every active arm of scenario ``s`` against its reference arm (see
    :func:`scenario_parameters`)."""
    return from_irgt_parameters(s.arm_labels[1:], scenario_parameters(s, outcome), alpha)
