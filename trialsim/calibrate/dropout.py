"""Dropout per arm and visit, and the scenario's MAR dropout model fitted by maximum likelihood.

The simulator (:mod:`trialsim.simulate.dropout`) drops a participant still in the study before
each follow-up visit with probability ``expit(alpha + b_T treated - b_B baseline_z
+ b_A missed_share treated)``. That is a discrete-time hazard model, so a logistic regression
on the person-visit records at risk (measured at the previous visit) is its likelihood
(Singer & Willett 2003, Applied Longitudinal Data Analysis, ch. 10-11). It is fitted by
Newton-Raphson (IRLS); statsmodels' Logit is the oracle in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special


def fit_logistic(
    X: np.ndarray, y: np.ndarray, *, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """ML logistic regression by Newton-Raphson; returns (coefficients, standard errors)."""
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        p = special.expit(X @ beta)
        info = X.T @ (X * (p * (1.0 - p))[:, None])
        step = np.linalg.solve(info, X.T @ (y - p))
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = special.expit(X @ beta)
    info = X.T @ (X * (p * (1.0 - p))[:, None])
    return beta, np.sqrt(np.diag(np.linalg.inv(info)))


@dataclass(frozen=True)
class DropoutFit:
    """Completion shares and the MAR hazard model's coefficients (scenario names)."""

    completion: dict[str, list[float]]  # arm -> share measured at each visit
    completion_final: float
    treated_log_odds: float
    baseline_log_odds: float
    attendance_log_odds: float
    se: dict[str, float]
    n_at_risk: int


def fit_dropout(
    observed: np.ndarray,
    treated: np.ndarray,
    baseline_z: np.ndarray,
    missed_share: np.ndarray,
) -> DropoutFit:
    """Completion per arm and visit, and the hazard model (see module docstring).

    observed : (N, V) measured at each visit (visit 0 = baseline).
    treated : (N,) bool; baseline_z : (N,) standardised baseline, favourable direction up;
    missed_share : (N,) share of offered sessions missed (0 for controls).
    """
    observed = np.asarray(observed, dtype=bool)
    n, v = observed.shape
    completion = {
        arm: observed[mask].mean(axis=0).round(4).tolist()
        for arm, mask in (("control", ~treated), ("treatment", treated))
    }
    z = np.where(np.isfinite(baseline_z), baseline_z, 0.0)
    person_x = np.column_stack([np.ones(n), treated, -z, missed_share * treated]).astype(float)
    at_risk = observed[:, :-1]  # (N, V-1): measured before follow-up t = 1..V-1
    X = np.concatenate([person_x[at_risk[:, t]] for t in range(v - 1)])
    y = np.concatenate([~observed[at_risk[:, t], t + 1] for t in range(v - 1)]).astype(float)
    names = ["intercept", "treated", "baseline", "attendance"]
    keep = [0, 1, 2] + ([3] if np.ptp(X[:, 3]) > 0 else [])  # no sessions data: no column
    beta, se = fit_logistic(X[:, keep], y)
    coef = dict.fromkeys(names, 0.0)
    ses = dict.fromkeys(names, float("nan"))
    for i, k in enumerate(keep):
        coef[names[k]], ses[names[k]] = float(beta[i]), float(se[i])
    return DropoutFit(
        completion=completion,
        completion_final=float(observed[:, -1].mean()),
        treated_log_odds=float(coef["treated"]),
        baseline_log_odds=float(coef["baseline"]),
        attendance_log_odds=float(coef["attendance"]),
        se=ses,
        n_at_risk=int(y.size),
    )
