"""The estimate record every analysis returns, batched over replicates.

An analysis of R replicate datasets returns one :class:`Estimates` whose arrays all have
leading length R. Failed fits are kept (``failed`` is True, numbers are NaN), never dropped:
operating characteristics count them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Estimates:
    """Treatment-effect estimates for a batch of replicates (arrays of length R).

    Attributes
    ----------
    analysis : name of the analysis that produced them.
    estimate, se : effect estimate and its standard error (outcome units).
    df : degrees of freedom of the reference t distribution (``inf`` for normal).
    p_value : two-sided p-value for effect = 0.
    ci_low, ci_high : confidence interval at ``level``.
    variance : named variance components, e.g. ``{"residual": ..., "group": ...}``.
    boundary : a variance component was estimated at zero.
    converged : the optimiser met its tolerance.
    failed : no estimate could be computed (all numbers NaN).
    """

    analysis: str
    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    level: float = 0.95
    variance: dict[str, np.ndarray] = field(default_factory=dict)
    boundary: np.ndarray | None = None
    converged: np.ndarray | None = None
    failed: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.estimate)
        default_false = np.zeros(n, dtype=bool)
        if self.boundary is None:
            object.__setattr__(self, "boundary", default_false.copy())
        if self.converged is None:
            object.__setattr__(self, "converged", ~default_false)
        if self.failed is None:
            object.__setattr__(self, "failed", ~np.isfinite(np.asarray(self.estimate)))

    @classmethod
    def from_t(
        cls,
        analysis: str,
        estimate: np.ndarray,
        se: np.ndarray,
        df: np.ndarray | float,
        *,
        level: float = 0.95,
        **extra,
    ) -> Estimates:
        """Build the record from estimate, SE and df: Wald t test and t interval."""
        estimate = np.asarray(estimate, dtype=float)
        se = np.asarray(se, dtype=float)
        df = np.broadcast_to(np.asarray(df, dtype=float), estimate.shape).copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            t = estimate / se
            p = 2.0 * stats.t.sf(np.abs(t), df)
            q = stats.t.ppf(0.5 + level / 2.0, df)
        return cls(
            analysis=analysis,
            estimate=estimate,
            se=se,
            df=df,
            p_value=p,
            ci_low=estimate - q * se,
            ci_high=estimate + q * se,
            level=level,
            **extra,
        )

    def __len__(self) -> int:
        return len(self.estimate)

    def to_frame(self, rep: np.ndarray | None = None) -> pd.DataFrame:
        """One row per replicate: rep, estimate, se, df, p_value, ci_low, ci_high,
        variance components (``var_<name>``) and flags."""
        n = len(self)
        cols = {
            "rep": np.arange(n) if rep is None else np.asarray(rep),
            "analysis": self.analysis,
            "estimate": self.estimate,
            "se": self.se,
            "df": self.df,
            "p_value": self.p_value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }
        for name, value in self.variance.items():
            cols[f"var_{name}"] = value
        cols.update(boundary=self.boundary, converged=self.converged, failed=self.failed)
        return pd.DataFrame(cols)
