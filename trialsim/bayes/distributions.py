"""Design priors written as ``family:params`` strings (the format ``trialsim calibrate`` writes).

=================  ==========================================  =====================
string             distribution                                 mean
=================  ==========================================  =====================
``normal:m,s``     normal, mean m, SD s                         m
``lognormal:m,s``  log-normal, log-scale mean m and SD s        exp(m + s^2/2)
``beta:a,b``       beta(a, b) on (0, 1), e.g. an ICC            a / (a + b)
``gamma:k,r``      gamma, shape k and *rate* r                  k / r
``uniform:l,h``    uniform on [l, h]                            (l + h) / 2
``fixed:v``        the single value v                           v
=================  ==========================================  =====================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trialsim.errors import UserError

_ARITY = {"normal": 2, "lognormal": 2, "beta": 2, "gamma": 2, "uniform": 2, "fixed": 1}
FAMILIES = tuple(_ARITY)


@dataclass(frozen=True)
class DesignPrior:
    """A parsed design prior; :meth:`sample` draws from it with an explicit generator."""

    family: str
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        p = self.params
        bad = None
        if self.family in ("normal", "lognormal") and not p[1] > 0:
            bad = "the SD must be positive"
        elif self.family in ("beta", "gamma") and not (p[0] > 0 and p[1] > 0):
            bad = "both parameters must be positive"
        elif self.family == "uniform" and not p[0] < p[1]:
            bad = "needs low < high"
        if bad:
            raise UserError(f"design prior {self.text}: {bad}")

    @property
    def text(self) -> str:
        return f"{self.family}:" + ",".join(f"{v:g}" for v in self.params)

    @property
    def mean(self) -> float:
        f, p = self.family, self.params
        return {
            "normal": lambda: p[0],
            "lognormal": lambda: math.exp(p[0] + p[1] ** 2 / 2),
            "beta": lambda: p[0] / (p[0] + p[1]),
            "gamma": lambda: p[0] / p[1],
            "uniform": lambda: (p[0] + p[1]) / 2,
            "fixed": lambda: p[0],
        }[f]()

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        f, p = self.family, self.params
        if f == "normal":
            return rng.normal(p[0], p[1], size)
        if f == "lognormal":
            return rng.lognormal(p[0], p[1], size)
        if f == "beta":
            return rng.beta(p[0], p[1], size)
        if f == "gamma":
            return rng.gamma(p[0], 1.0 / p[1], size)
        if f == "uniform":
            return rng.uniform(p[0], p[1], size)
        return np.full(size, p[0])


def parse_design_prior(text: str) -> DesignPrior:
    """Parse ``family:p1,p2``, e.g. ``normal:4,2``, ``beta:2,30``, ``fixed:0.05``."""
    family, sep, rest = text.strip().lower().partition(":")
    if not sep or family not in _ARITY:
        raise UserError(
            f"design prior {text!r}: expected family:params with family one of "
            f"{', '.join(FAMILIES)}, e.g. normal:4,2 or beta:2,30"
        )
    try:
        params = tuple(float(v) for v in rest.split(","))
    except ValueError:
        params = ()
    if len(params) != _ARITY[family] or not all(math.isfinite(v) for v in params):
        raise UserError(
            f"design prior {text!r}: {family} takes {_ARITY[family]} number(s), e.g. "
            + {"fixed": "fixed:0.05", "beta": "beta:2,30"}.get(family, f"{family}:4,2")
        )
    return DesignPrior(family, params)
