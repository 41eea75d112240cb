"""Missing-data analyses of the final visit (docs/analyses.md, "Missing data").

* :func:`complete_case` - ANCOVA on participants measured at the final visit.
* :func:`mar_all_visits` - maximum likelihood under missing at random (MAR), using every
  visit, with an unstructured covariance over the visits and attendance as an auxiliary
  variable (the ``repeated`` analysis, :mod:`trialsim.analyse.repeated`, is the
  random-intercept model over every visit without them): with monotone dropout and a
  multivariate normal regression model the likelihood factorises into a sequence of
  regressions (Little & Rubin 2002, §7.2-7.4; Anderson 1957).
* :func:`delta_adjusted` / :func:`tipping_point` - delta-adjusted MNAR sensitivity analysis:
  the missing final outcomes of the treated arm are assumed ``delta`` worse than MAR predicts,
  and the tipping point is the ``delta`` at which the lower confidence limit reaches 0
  (Ratitch, O'Kelly & Tosiello 2013, Pharm Stat 12:337-347).

All analyses adjust for the baseline of the outcome and municipality strata (the covariates of
:func:`~trialsim.analyse.prepare.ancova_arrays`), use model-based (not cluster-robust) standard
errors - they ignore the treatment groups; see the partially nested mixed model for that - and
are batched over replicates. Least squares comes from :mod:`trialsim.analyse.ols`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.ols import fit_ols, ols_batch
from trialsim.analyse.prepare import ancova_arrays
from trialsim.data import TrialData
from trialsim.errors import UserError


def _covariates(data: TrialData, outcome: str) -> tuple[np.ndarray, np.ndarray, int]:
    """ANCOVA covariates W (R, N, p) for everyone with a baseline, the baseline mask and the
    treatment column."""
    a = ancova_arrays(data, outcome, rows="baseline")
    return a.X, a.mask, a.treat_column


def complete_case(
    data: TrialData, outcome: str, *, visit: int = -1, level: float = 0.95
) -> Estimates:
    """ANCOVA on complete cases (participants measured at ``visit``, default the last).

    Unbiased under MCAR, and under MAR when dropout depends only on the covariates in the model
    (baseline, municipality, arm); biased when dropout depends on post-randomisation variables
    related to the outcome (attendance, intermediate outcomes) or on the outcome itself (MNAR).
    SE: classical OLS, t with n - p df (clustering ignored).
    """
    a = ancova_arrays(data, outcome, visit=visit)
    return fit_ols(a.y, a.X, a.mask, coef=a.treat_column, analysis="complete-case", level=level)


@dataclass(frozen=True)
class _MarFit:
    estimate: np.ndarray  # (R,)
    se: np.ndarray
    df: np.ndarray
    residual: np.ndarray  # residual variance of the final factor
    failed: np.ndarray
    W: np.ndarray  # (R, N, p) covariates
    base: np.ndarray  # (R, N) rows with a baseline
    final_observed: np.ndarray  # (R, N)
    treat_column: int


def _fit_mar(
    data: TrialData,
    outcome: str,
    visit: int,
    attendance_degree: int,
    small_sample: bool,
) -> _MarFit:
    W, base, t = _covariates(data, outcome)
    r, n, p = W.shape
    if not np.asarray(data.sessions_offered).any():
        attendance_degree = 0  # attendance not recorded: MAR given the other terms only
    final = visit % data.n_visits
    if final == 0:
        raise UserError("mar_all_visits analyses a follow-up visit, not the baseline (visit 0)")
    values = data.outcomes[outcome]
    seq_values = [values[:, :, v] for v in range(1, final + 1)]
    seq_observed = [np.isfinite(v) for v in seq_values]
    fraction = (data.sessions_attended / np.maximum(data.sessions_offered, 1)).astype(float)
    for power in range(attendance_degree, 0, -1):
        seq_values.insert(0, fraction**power)
        seq_observed.insert(0, np.ones((r, n), dtype=bool))

    # Factor k: v_k on [W, v_1..v_{k-1}] among those observed at v_1..v_k (monotone pattern).
    # B_k, the coefficients of E[v_k | W], follow by the chain B_k = g_k + sum_j phi_kj B_j.
    implied: list[np.ndarray] = []  # B_k, (R, p)
    phis: list[np.ndarray] = []  # phi_k, (R, k-1)
    covs: list[np.ndarray] = []  # Cov of (g_k, phi_k), (R, q, q)
    failed = np.zeros(r, dtype=bool)
    seen = base.copy()
    previous = np.zeros((r, n, 0))
    for value, observed in zip(seq_values, seq_observed, strict=True):
        seen = seen & observed
        X = np.concatenate([W, previous], axis=-1)
        fit = ols_batch(value, X, seen)
        q = X.shape[-1]
        resid_df = fit.n_obs - q if small_sample else fit.n_obs
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma2 = fit.rss / resid_df
        gamma, phi = fit.beta[:, :p], fit.beta[:, p:]
        b_k = gamma + sum(
            (phi[:, j, None] * implied[j] for j in range(len(implied))), np.zeros((r, p))
        )
        implied.append(b_k)
        phis.append(phi)
        covs.append(sigma2[:, None, None] * fit.bread)
        failed |= fit.failed | (resid_df <= 0)
        previous = np.concatenate([previous, np.where(seen, value, 0.0)[..., None]], axis=-1)
    final_df = fit.n_obs - X.shape[-1]

    # Delta method: c_k = dB_K[t]/dB_k[t] by back-propagation through the chain; the factors'
    # parameters are asymptotically independent (block-diagonal information).
    k_total = len(implied)
    c = [np.zeros(r) for _ in range(k_total)]
    c[-1] = np.ones(r)
    for k in range(k_total - 1, -1, -1):
        for j in range(k):
            c[j] = c[j] + c[k] * phis[k][:, j]
    var = np.zeros(r)
    for k in range(k_total):
        grad = np.zeros((r, p + k))
        grad[:, t] = 1.0
        for j in range(k):
            grad[:, p + j] = implied[j][:, t]
        var += c[k] ** 2 * np.einsum("ri,rij,rj->r", grad, covs[k], grad)
    estimate = implied[-1][:, t]
    se = np.sqrt(var)
    failed |= ~np.isfinite(se)
    return _MarFit(
        estimate=np.where(failed, np.nan, estimate),
        se=np.where(failed, np.nan, se),
        df=final_df,
        residual=sigma2,
        failed=failed,
        W=W,
        base=base,
        final_observed=seen,
        treat_column=t,
    )


def mar_all_visits(
    data: TrialData,
    outcome: str,
    *,
    visit: int = -1,
    attendance_degree: int = 1,
    small_sample: bool = True,
    level: float = 0.95,
) -> Estimates:
    """Maximum-likelihood treatment effect at ``visit`` under MAR, using all earlier visits.

    Model: the follow-up outcomes (and, with ``attendance_degree`` = d > 0, the attended
    fraction and its powers up to d as always-observed auxiliary variables placed first) are
    multivariate normal given the
    covariates W (intercept, arm, centred baseline, municipality), with means linear in W and
    an unstructured covariance. With monotone dropout the observed-data likelihood factorises
    (Little & Rubin 2002, §7.4): the ML estimates are the least-squares fits of each variable on
    W and all earlier variables among those observed, and the mean coefficients of the final
    visit follow by the chain ``B_k = gamma_k + sum_j phi_kj B_j``. The estimate is the arm
    coefficient of ``B_final``: the baseline-adjusted ITT effect.

    Including attendance makes the analysis valid when dropout depends on attendance (as in the
    simulator's MAR mechanism) *provided* the outcome's mean is linear in the attendance terms
    given the covariates; attendance enters only as a variable to condition on, so the
    estimand is still the ITT effect, not an effect at fixed attendance. Known bias: when
    attendance is self-selected on prognosis, E[outcome | baseline, attendance] is non-linear
    and non-additive, and the linear imputation model is misspecified; under the simulator's
    MAR dropout the estimate is then biased (about -0.3 PSP points at
    ``prognosis_log_odds=0.5``, -1.5 at 1.5, with ``attendance_log_odds=3``), though much less
    than complete case. With ``attendance_degree=0`` it is MAR given baseline, arm,
    municipality and earlier visits only (also when the data record no attendance: no
    sessions offered). Participants with
    non-monotone (intermittent) missingness contribute only up to their first missing visit.

    SE by the delta method with the factors' parameters independent and each factor's
    coefficient covariance ``sigma_k^2 (X_k'X_k)^-1``. With ``small_sample=False``,
    ``sigma_k^2 = RSS_k / n_k`` (ML) and the SE equals the inverse observed information of the
    joint model; the default uses ``RSS_k / (n_k - q_k)``. Reference distribution t with the
    final factor's residual df ``n_final - q_final``. Without missing data the estimate equals
    the complete-case ANCOVA. Clustering by group is ignored.
    """
    fit = _fit_mar(data, outcome, visit, attendance_degree, small_sample)
    name = _mar_name(attendance_degree if np.asarray(data.sessions_offered).any() else 0)
    return Estimates.from_t(
        name,
        fit.estimate,
        fit.se,
        fit.df,
        level=level,
        variance={"residual": fit.residual},
        failed=fit.failed,
    )


def _missing_share(fit: _MarFit, arm_treated: np.ndarray) -> np.ndarray:
    """Arm coefficient of the least-squares fit of 1{treated, final missing} on W: how much a
    unit shift of the treated arm's missing final values moves the ANCOVA estimate."""
    missing = (arm_treated & fit.base & ~fit.final_observed).astype(float)
    return ols_batch(missing, fit.W, fit.base).beta[:, fit.treat_column]


def delta_adjusted(
    data: TrialData,
    outcome: str,
    *,
    delta: float,
    better: str = "higher",
    visit: int = -1,
    attendance_degree: int = 1,
    small_sample: bool = True,
    level: float = 0.95,
) -> Estimates:
    """MAR estimate with the treated arm's missing final outcomes shifted ``delta`` worse.

    ``delta`` is in outcome units; "worse" is lower when ``better="higher"``, higher when
    ``better="lower"``. The estimate equals imputing every missing value by its MAR conditional
    mean (shifted by delta in the treated arm) and fitting the ANCOVA to the completed data, the
    limit of delta-adjusted multiple imputation with infinitely many imputations (Ratitch et
    al. 2013): ``theta(delta) = theta_MAR - sign * delta * s``, where ``s`` is the arm coefficient
    of the regression of 1{treated and missing} on the covariates (about the treated arm's
    share missing).

    SE: delta is a fixed sensitivity parameter and ``s`` is fixed given who is missing, so the
    SE is that of the MAR estimate. (Delta-adjusted multiple imputation reports slightly larger
    SEs as delta grows, because the shift inflates the completed-data residual variance; that
    inflation is an artefact of Rubin's rules, not information loss.)
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    fit = _fit_mar(data, outcome, visit, attendance_degree, small_sample)
    sign = 1.0 if better == "higher" else -1.0
    estimate = fit.estimate - sign * delta * _missing_share(fit, data.treated)
    return Estimates.from_t(
        f"delta-adjusted(delta={delta:g})",
        estimate,
        fit.se,
        fit.df,
        level=level,
        failed=fit.failed.copy(),
    )


@dataclass(frozen=True)
class TippingPoint:
    """Delta-adjusted estimates over a grid of deltas, and each replicate's tipping delta.

    ``by_delta[i]`` is the :class:`Estimates` at ``deltas[i]``; ``tipping_delta`` (R,) is the
    delta (outcome units, in the "worse" direction) at which the lower confidence limit
    reaches 0 - negative when the MAR lower limit is already below 0, NaN when the treated arm
    has no missing final values (no delta changes the estimate) or the fit failed.
    """

    deltas: np.ndarray
    by_delta: tuple[Estimates, ...]
    tipping_delta: np.ndarray
    mar: Estimates

    def to_frame(self, rep: np.ndarray | None = None) -> pd.DataFrame:
        """Long table: one row per (replicate, delta)."""
        frames = []
        for delta, est in zip(self.deltas, self.by_delta, strict=True):
            frame = est.to_frame(rep)
            frame.insert(1, "delta", delta)
            frame["tipping_delta"] = self.tipping_delta
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


def tipping_point(
    data: TrialData,
    outcome: str,
    *,
    deltas: np.ndarray | list[float] | None = None,
    better: str = "higher",
    visit: int = -1,
    attendance_degree: int = 1,
    small_sample: bool = True,
    level: float = 0.95,
) -> TippingPoint:
    """Delta-adjusted MNAR sensitivity analysis and tipping point (Ratitch et al. 2013).

    For each delta of ``deltas`` (outcome units; default 0 to one SD of the observed final
    outcome in 11 steps) see :func:`delta_adjusted`. Because the estimate is linear in delta
    and the SE does not depend on it, the tipping point is exact:
    ``delta* = (theta_MAR - q SE) / s`` with q the t quantile, i.e. the MAR lower confidence
    limit divided by ``s`` (the share of the treated arm that is missing, covariate-adjusted).
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    fit = _fit_mar(data, outcome, visit, attendance_degree, small_sample)
    if deltas is None:
        final = data.outcomes[outcome][:, :, visit % data.n_visits]
        deltas = np.linspace(0.0, float(np.nanstd(final)), 11)
    deltas = np.asarray(deltas, dtype=float)
    sign = 1.0 if better == "higher" else -1.0
    share = _missing_share(fit, data.treated)
    by_delta = tuple(
        Estimates.from_t(
            f"delta-adjusted(delta={d:g})",
            fit.estimate - sign * d * share,
            fit.se,
            fit.df,
            level=level,
            failed=fit.failed.copy(),
        )
        for d in deltas
    )
    name = _mar_name(attendance_degree)
    mar = Estimates.from_t(name, fit.estimate, fit.se, fit.df, level=level, failed=fit.failed)
    # the limit that moves towards 0 as delta grows: lower if higher is better, else upper
    limit = mar.ci_low if better == "higher" else -mar.ci_high
    with np.errstate(divide="ignore", invalid="ignore"):
        tipping = np.where(share > 1e-12, limit / share, np.nan)
    return TippingPoint(deltas=deltas, by_delta=by_delta, tipping_delta=tipping, mar=mar)


def _mar_name(attendance_degree: int) -> str:
    if attendance_degree <= 0:
        return "mar-all-visits"
    return f"mar-all-visits+attendance^{attendance_degree}"
