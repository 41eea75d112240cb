"""Normal-normal Bayesian reanalysis of a published effect estimate.

The published estimate ``theta_hat`` with standard error ``se`` (on the analysis scale: the
log scale for ratios) is read as a normal likelihood; with a normal prior ``N(m, s^2)`` the
posterior is normal with (Spiegelhalter, Abrams & Myles 2004, *Bayesian Approaches to
Clinical Trials and Health-Care Evaluation*, §3.6)::

    precision = 1/s^2 + 1/se^2,   mean = (m/s^2 + theta_hat/se^2) / precision.

The SE is recovered from a published confidence interval as ``(U - L) / (2 z)`` on the
analysis scale, ``z = 1.96`` for a 95 % interval. For ratios the posterior of the ratio is
log-normal: its median and interval are ``exp`` of the analysis-scale ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from trialsim.bayes.priors import DEFAULT_TAIL, EffectPrior, resolve_prior
from trialsim.errors import UserError

SCALES = ("identity", "log")


@dataclass(frozen=True)
class Reanalysis:
    """Prior, likelihood and posterior of one reanalysed effect (analysis scale)."""

    scale: str
    better: str
    estimate: float
    se: float
    mcid: float  # analysis scale, signed
    prior: EffectPrior
    posterior_mean: float
    posterior_sd: float
    ci_low: float
    ci_high: float
    p_benefit: float
    p_beyond_mcid: float
    level: float = 0.95

    def to_original(self, value: float) -> float:
        return math.exp(value) if self.scale == "log" else value

    def to_dict(self) -> dict:
        """JSON record: analysis-scale keys plus ``*_original`` values on the reported scale."""
        out = {
            "scale": self.scale,
            "better": self.better,
            "prior": self.prior.as_dict(),
            "prior_text": self.prior.describe(),
            "likelihood_mean": self.estimate,
            "likelihood_se": self.se,
            "mcid": self.mcid,
            "level": self.level,
            "posterior_mean": self.posterior_mean,
            "posterior_sd": self.posterior_sd,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_benefit": self.p_benefit,
            "p_beyond_mcid": self.p_beyond_mcid,
        }
        # on the original scale the posterior median is exp(mean) for ratios (log-normal)
        out.update(
            mcid_original=self.to_original(self.mcid),
            posterior_median_original=self.to_original(self.posterior_mean),
            ci_low_original=self.to_original(self.ci_low),
            ci_high_original=self.to_original(self.ci_high),
        )
        return out


def to_analysis_scale(value: float, scale: str, what: str) -> float:
    if scale not in SCALES:
        raise UserError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if scale == "log":
        if not value > 0:
            raise UserError(f"{what} must be positive on a ratio (log) scale, got {value}")
        return math.log(value)
    return float(value)


def se_from_ci(low: float, high: float, *, scale: str = "identity", level: float = 0.95) -> float:
    """Standard error implied by a symmetric (on the analysis scale) confidence interval."""
    lo = to_analysis_scale(low, scale, "the CI lower limit")
    hi = to_analysis_scale(high, scale, "the CI upper limit")
    if not hi > lo:
        raise UserError(f"CI upper limit ({high}) must exceed its lower limit ({low})")
    return (hi - lo) / (2.0 * stats.norm.isf((1.0 - level) / 2.0))


def reanalyse(
    estimate: float,
    *,
    se: float | None = None,
    ci: tuple[float, float] | None = None,
    scale: str = "identity",
    mcid: float,
    prior: str | EffectPrior = "sceptical",
    better: str = "higher",
    level: float = 0.95,
    tail: float = DEFAULT_TAIL,
) -> Reanalysis:
    """Posterior of a published effect under a named or custom normal prior.

    Parameters
    ----------
    estimate : published point estimate on its reported scale (a ratio when ``scale='log'``).
    se : its standard error on the analysis scale; or give ``ci`` instead.
    ci : the published 95 % confidence interval ``(low, high)`` on the reported scale.
    scale : ``identity`` (differences) or ``log`` (ratios: OR, RR, HR).
    mcid : minimal clinically important difference on the reported scale, e.g. ``7`` PSP
        points or a risk ratio of ``0.8``; it must lie on the side of benefit.
    prior : ``sceptical``, ``enthusiastic``, ``flat``, ``normal:MEAN,SD`` or an EffectPrior.
    better : ``higher`` or ``lower`` values of the effect are beneficial.

    Example
    -------
    >>> r = reanalyse(0.75, ci=(0.55, 1.02), scale="log", mcid=0.52, better="lower")
    >>> round(r.p_benefit, 2)
    0.95
    """
    if better not in ("higher", "lower"):
        raise UserError(f"--better must be higher or lower, got {better!r}")
    if (se is None) == (ci is None):
        raise UserError("give exactly one of --se or --ci")
    theta = to_analysis_scale(estimate, scale, "the estimate")
    if ci is not None:
        se = se_from_ci(*ci, scale=scale, level=0.95)
        lo, hi = (to_analysis_scale(v, scale, "the CI") for v in ci)
        if not lo <= theta <= hi:
            raise UserError(f"the estimate ({estimate}) lies outside its CI {tuple(ci)}")
    if not (se is not None and math.isfinite(se) and se > 0):
        raise UserError(f"--se must be a positive number, got {se}")
    delta = to_analysis_scale(mcid, scale, "--mcid")
    sign = 1.0 if better == "higher" else -1.0
    if not sign * delta > 0:
        side = "above" if better == "higher" else "below"
        null = "1" if scale == "log" else "0"
        raise UserError(
            f"--mcid {mcid} must lie on the side of benefit ({side} {null} when --better {better})"
        )
    if not 0 < level < 1:
        raise UserError(f"level must be in (0, 1), got {level}")
    if isinstance(prior, str):
        prior = resolve_prior(prior, mcid=delta, tail=tail)
    precision = prior.precision + 1.0 / se**2
    mean = (prior.precision * prior.mean + theta / se**2) / precision
    sd = math.sqrt(1.0 / precision)
    z = stats.norm.isf((1.0 - level) / 2.0)
    post = stats.norm(mean, sd)
    benefit = post.sf(0.0) if sign > 0 else post.cdf(0.0)
    beyond = post.sf(delta) if sign > 0 else post.cdf(delta)
    return Reanalysis(
        scale=scale,
        better=better,
        estimate=theta,
        se=float(se),
        mcid=delta,
        prior=prior,
        posterior_mean=mean,
        posterior_sd=sd,
        ci_low=mean - z * sd,
        ci_high=mean + z * sd,
        p_benefit=float(benefit),
        p_beyond_mcid=float(beyond),
        level=level,
    )
