"""Named priors for a treatment effect, resolved to a normal distribution on the analysis scale.

The clinical priors follow Spiegelhalter, Freedman & Parmar (1994, J R Stat Soc A 157:357):

- ``sceptical``: centred on no effect, with a small probability (default 5 %) that the effect is
  at least as good as the minimal clinically important difference (MCID): ``N(0, s^2)`` with
  ``s = |MCID| / z_{1-tail}``;
- ``enthusiastic``: the same spread, centred on the MCID: ``N(MCID, s^2)``;
- ``flat``: an improper uniform prior (the likelihood alone);
- ``weakly-informative``: ``N(0, (2.5 * scale)^2)`` where ``scale`` is the outcome SD, the
  autoscaling of Gelman et al. (2008, Ann Appl Stat 2:1360) as used by rstanarm;
- ``normal:MEAN,SD``: a custom normal prior on the analysis scale (log scale for ratios).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from trialsim.errors import UserError

PRIOR_NAMES = ("weakly-informative", "sceptical", "enthusiastic", "flat")
PRIOR_HELP = "weakly-informative | sceptical | enthusiastic | flat | normal:MEAN,SD"
DEFAULT_TAIL = 0.05  # sceptical prior: P(effect at least as good as the MCID)
WEAK_SCALE = 2.5  # weakly informative: SD = 2.5 outcome SDs


@dataclass(frozen=True)
class EffectPrior:
    """A normal prior ``N(mean, sd^2)`` on the effect (``sd = inf`` is the flat prior)."""

    name: str
    mean: float
    sd: float

    @property
    def flat(self) -> bool:
        return math.isinf(self.sd)

    @property
    def precision(self) -> float:
        return 0.0 if self.flat else 1.0 / self.sd**2

    def describe(self) -> str:
        """One line for the output, e.g. ``sceptical: normal(mean=0, sd=4.256)``."""
        if self.flat:
            return f"{self.name}: flat (improper uniform)"
        return f"{self.name}: normal(mean={self.mean:.4g}, sd={self.sd:.4g})"

    def as_dict(self) -> dict:
        return {"name": self.name, "mean": self.mean, "sd": None if self.flat else self.sd}


def resolve_prior(
    spec: str,
    *,
    mcid: float | None = None,
    scale: float | None = None,
    tail: float = DEFAULT_TAIL,
) -> EffectPrior:
    """Turn a prior name or ``normal:MEAN,SD`` into an :class:`EffectPrior`.

    Parameters
    ----------
    spec : one of :data:`PRIOR_NAMES` or ``normal:MEAN,SD``.
    mcid : signed minimal clinically important difference on the analysis scale (positive when
        higher is better, negative when lower is better); needed by sceptical/enthusiastic.
    scale : outcome SD; needed by weakly-informative.
    tail : sceptical prior probability beyond the MCID.

    Example
    -------
    >>> resolve_prior("sceptical", mcid=7.0).describe()
    'sceptical: normal(mean=0, sd=4.256)'
    """
    text = spec.strip().lower().replace("skeptical", "sceptical")
    if text.startswith("normal:"):
        try:
            mean_text, sd_text = text.removeprefix("normal:").split(",")
            mean, sd = float(mean_text), float(sd_text)
        except ValueError:
            raise UserError(
                f"prior {spec!r}: expected normal:MEAN,SD with two numbers, e.g. normal:0,5"
            ) from None
        if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0):
            raise UserError(f"prior {spec!r}: MEAN must be finite and SD positive")
        return EffectPrior("normal", mean, sd)
    if text == "flat":
        return EffectPrior("flat", 0.0, math.inf)
    if text in ("sceptical", "enthusiastic"):
        if mcid is None or not math.isfinite(mcid) or mcid == 0:
            raise UserError(
                f"prior {text!r} needs a non-zero MCID (--mcid, or outcomes.<name>.mcid in the "
                "scenario)"
            )
        if not 0 < tail < 0.5:
            raise UserError(f"sceptical tail probability must be in (0, 0.5), got {tail}")
        sd = abs(mcid) / stats.norm.isf(tail)
        return EffectPrior(text, 0.0 if text == "sceptical" else float(mcid), sd)
    if text in ("weakly-informative", "weak", "default"):
        if scale is None or not scale > 0:
            raise UserError("the weakly-informative prior needs the outcome SD as its scale")
        return EffectPrior("weakly-informative", 0.0, WEAK_SCALE * float(scale))
    raise UserError(f"unknown prior {spec!r}; choose {PRIOR_HELP}")
