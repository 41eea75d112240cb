"""From TrialData to the arrays an analysis model needs (no DataFrame round trip).

The ANCOVA design: outcome at a follow-up visit on intercept, arms, baseline of the same
outcome (centred, when there is a baseline), covariates, site strata (when randomisation is
within sites) and period effects (stepped wedge), all derived from the data's
:class:`~trialsim.structure.TrialStructure`. All arrays carry the leading replicate axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from trialsim.data import TrialData
from trialsim.errors import UserError


@dataclass(frozen=True)
class ModelArrays:
    """Arrays for one outcome at one visit, R replicates of N participants, p columns.

    ``X[..., 1]`` is the treatment indicator (the coefficient of interest). ``mask`` marks
    rows usable for a complete-case analysis. ``X`` is a view of ``Xy``, the design with the
    outcome as last column, both zero outside ``mask``: the layout :func:`fit_reml_masked
    <trialsim.analyse.reml.fit_reml_masked>` takes without copying.
    """

    y: np.ndarray  # (R, N) follow-up outcome, NaN when missing
    X: np.ndarray  # (R, N, p)
    columns: tuple[str, ...]
    mask: np.ndarray  # (R, N) complete cases
    treated: np.ndarray  # (R, N) bool
    group: np.ndarray  # (R, N) treatment group, -1 for none
    cluster: np.ndarray  # (R, N) randomised cluster (municipality/cohort), -1 individual
    baseline: np.ndarray  # (R, N)
    attended_fraction: np.ndarray  # (R, N) share of offered sessions attended (0 untreated)
    Xy: np.ndarray | None = None  # (R, N, p + 1) [X, y] zero outside mask; X is its view

    @property
    def treat_column(self) -> int:
        return 1


def batch_inputs(y, X, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check and broadcast a batch for a fitter: ``y`` (R, N), ``X`` (R, N, p) or (N, p),
    ``mask`` (R, N) or None. Returns float ``y``, ``X`` as (1 or R, N, p) and the rows to use
    (finite ``y`` and ``mask``; finiteness of ``X`` is left to the fitter)."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"y must have shape (R, N), got {y.shape}")
    n_rep, n = y.shape
    X = np.asarray(X, dtype=float)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.shape[1] != n or X.shape[0] not in (1, n_rep):
        raise ValueError(f"X must have shape (R, N, p) or (N, p) with N = {n}, got {X.shape}")
    used = np.isfinite(y)
    if mask is not None:
        used = used & np.broadcast_to(np.asarray(mask, dtype=bool), (n_rep, n))
    return y, X, used


def masked_inputs(Xy, used, coef: int, *ids) -> tuple:
    """Check a batch in the layout of ``ModelArrays.Xy`` for a fitter: returns ``Xy`` as float
    (R, N, p + 1), ``used`` as (R, N) bool, ``coef`` as a column index 0..p-1 and each array of
    ``ids`` (cluster, group: (R, N) or (N,)) as (R, N) int64."""
    Xy = np.asarray(Xy, dtype=float)
    if Xy.ndim != 3:
        raise ValueError(f"Xy must have shape (R, N, p + 1), got {Xy.shape}")
    n_rep, n, q = Xy.shape
    used = np.broadcast_to(np.asarray(used, dtype=bool), (n_rep, n))
    ids = tuple(np.broadcast_to(np.asarray(i, dtype=np.int64), (n_rep, n)) for i in ids)
    return (Xy, used, check_coef(coef, q - 1), *ids)


def check_coef(coef: int, p: int) -> int:
    """``coef`` as an index 0..p-1 of the p columns of X (negative counts from the end)."""
    if not -p <= coef < p:
        raise ValueError(f"coef must index one of the {p} columns of X, got {coef}")
    return coef % p


@numba.njit(nogil=True, cache=True)
def _fill_design(fixed, arm, arm_column, baseline, baseline_column, y, mask, out):
    """``out[r, i] = [fixed + arm indicator, baseline - mean, y]`` on the rows in ``mask`` and
    zero elsewhere, in one pass over ``out``.

    ``arm_column[a]`` is the column of arm ``a``'s indicator (-1: none, the reference); the
    baseline (column ``baseline_column``, -1: none) is centred on its mean over every finite
    value of the batch; every other column comes from ``fixed`` (shape (1 or R, N, q)),
    whose first axis is 1 when the fixed columns are the same in every replicate.
    """
    n_rep, n = y.shape
    q = out.shape[2]
    shared = fixed.shape[0] == 1
    centre = 0.0
    if baseline_column >= 0:
        total, count = 0.0, 0
        for r in range(n_rep):
            for i in range(n):
                if np.isfinite(baseline[r, i]):
                    total += baseline[r, i]
                    count += 1
        centre = total / count if count else 0.0
    for r in range(n_rep):
        template = fixed[0] if shared else fixed[r]
        for i in range(n):
            if mask[r, i]:
                for j in range(q):
                    out[r, i, j] = template[i, j]
                c = arm_column[arm[r, i]]
                if c >= 0:
                    out[r, i, c] = 1.0
                if baseline_column >= 0:
                    out[r, i, baseline_column] = baseline[r, i] - centre
                out[r, i, q - 1] = y[r, i]
            else:
                for j in range(q):
                    out[r, i, j] = 0.0


def _shared(a: np.ndarray) -> np.ndarray:
    """``a`` (R, N) as (1, N) when every replicate holds the same values, else as is."""
    if a.shape[0] == 1 or (a.strides[0] == 0) or (a == a[:1]).all():
        return a[:1]
    return a


def _fixed_columns(data: TrialData) -> tuple[list[str], list[np.ndarray], np.ndarray | None]:
    """Names and (1 or R, N) values of the design's columns beyond arms and baseline:
    covariates (numeric centred; categorical as R's treatment contrasts), site strata
    (randomisation within sites) and stepped-wedge periods; and where a covariate is missing
    ((1 or R, N) bool, None when none is), with the value 0 there."""
    st = data.structure
    names: list[str] = []
    values: list[np.ndarray] = []
    missing = None
    for name, x in data.covariates.items():
        spec = st.covariates[name]
        x = _shared(x)
        absent = ~np.isfinite(x)
        if absent.any():
            missing = absent if missing is None else missing | absent
            x = np.where(absent, 0.0 if spec.kind == "numeric" else -1, x)
        if spec.kind == "categorical":
            for j, level in enumerate(spec.levels[1:], start=1):
                names.append(f"{name}[{level}]")
                values.append((x == j).astype(float))
        else:
            names.append(name)
            centred = x - (x[~absent].mean() if (~absent).any() else 0.0)
            values.append(np.where(absent, 0.0, centred))
    if st.stratified and st.site is not None:
        site = _shared(data.site)
        for j, label in enumerate(data.site_names[1:], start=1):
            names.append(f"{st.site}[{label}]")
            values.append((site == j).astype(float))
    if st.n_periods > 1:
        period = _shared(data.period)
        for j in range(1, st.n_periods):
            names.append(f"period[{j}]")
            values.append((period == j).astype(float))
    return names, values, missing


def ancova_arrays(
    data: TrialData, outcome: str, *, visit: int = -1, rows: str = "complete"
) -> ModelArrays:
    """Design arrays for ``outcome`` at ``visit`` (default the last).

    ``rows="complete"`` keeps (``mask``) the participants measured at ``visit`` and at
    baseline; ``rows="baseline"`` everyone measured at baseline (the covariates of a
    likelihood analysis over all visits; ``y`` may then be missing).

    Columns: intercept, the contrast's arm, the other non-reference arms, the baseline of the
    same outcome (centred; when the trial has a baseline visit, the analysed visit is a
    follow-up and the outcome was measured at baseline), the covariates, site strata and
    periods (see :func:`_fixed_columns`).
    """
    if outcome not in data.outcomes:
        raise UserError(
            f"unknown outcome {outcome!r}; the data have {', '.join(data.outcomes) or 'none'}"
        )
    st = data.structure
    values = data.outcomes[outcome]
    y = values[:, :, visit]
    r, n = y.shape
    if rows not in ("complete", "baseline"):
        raise ValueError(f"rows must be 'complete' or 'baseline', got {rows!r}")
    baseline = values[:, :, 0]
    with_baseline = st.has_baseline and visit % data.n_visits != 0
    if with_baseline:
        measured = np.isfinite(baseline)
        with_baseline = bool(measured.any())
    if not with_baseline:
        if rows == "baseline":
            raise UserError(
                f"{outcome!r} has no baseline measurement: analyses over all visits need one"
            )
        baseline = np.zeros_like(y)
    if rows == "baseline":
        mask = measured
    else:
        mask = np.isfinite(y)
        if with_baseline:
            mask &= measured
    names, extra, missing = _fixed_columns(data)
    if missing is not None:  # a missing covariate leaves the participant out (complete cases)
        mask &= ~np.broadcast_to(missing, (r, n))
    # the contrast's arm in column 1, then the other non-reference arms that have data
    arm_column = np.full(st.n_arms, -1, dtype=np.int64)
    arm_column[data.contrast] = 1
    columns = ["intercept", "treatment"]
    others = [k for k in range(1, st.n_arms) if k != data.contrast]
    if others:
        present = np.unique(data.arm[mask])
        for k in (k for k in others if k in present):
            arm_column[k] = len(columns)
            columns.append(f"arm[{st.arms[k]}]")
    baseline_column = len(columns) if with_baseline else -1
    columns += ["baseline"] if with_baseline else []
    lead = len(columns)
    columns += names
    shared = all(v.shape[0] == 1 for v in extra)
    fixed = np.zeros((1 if shared else r, n, len(columns) + 1))
    fixed[..., 0] = 1.0
    for j, v in enumerate(extra):
        fixed[..., lead + j] = v
    Xy = np.empty((r, n, len(columns) + 1))
    _fill_design(fixed, data.arm, arm_column, baseline, baseline_column, y, mask, Xy)
    fraction = data.sessions_attended / np.maximum(data.sessions_offered, 1)
    return ModelArrays(
        y=y,
        X=Xy[..., :-1],
        columns=tuple(columns),
        mask=mask,
        treated=data.treated,
        group=data.group,
        cluster=data.cluster,
        baseline=baseline,
        attended_fraction=fraction,
        Xy=Xy,
    )
