"""From TrialData to the arrays an analysis model needs (no DataFrame round trip).

The ANCOVA design of DESIGN.md §4: outcome at a follow-up visit on intercept, treatment,
baseline of the same outcome (centred), municipality strata (when randomisation is within
municipality) and period effects (stepped wedge). All arrays carry the leading replicate axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from trialsim.data import TrialData

WITHIN_MUNICIPALITY = ("individual", "waitlist", "cohort")


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
def _fill_design(fixed, treated, baseline, y, mask, out):
    """``out[r, i] = [fixed[i, 0], treated, baseline - mean, fixed[i, 3:-1], y]`` on the rows
    in ``mask`` and zero elsewhere, in one pass over ``out``; the baseline is centred on its
    mean over every finite value of the batch."""
    n_rep, n = y.shape
    q = out.shape[2]
    total, count = 0.0, 0
    for r in range(n_rep):
        for i in range(n):
            if np.isfinite(baseline[r, i]):
                total += baseline[r, i]
                count += 1
    centre = total / count if count else 0.0
    for r in range(n_rep):
        for i in range(n):
            if mask[r, i]:
                for j in range(q):
                    out[r, i, j] = fixed[i, j]
                out[r, i, 1] = 1.0 if treated[r, i] else 0.0
                out[r, i, 2] = baseline[r, i] - centre
                out[r, i, q - 1] = y[r, i]
            else:
                for j in range(q):
                    out[r, i, j] = 0.0


def ancova_arrays(data: TrialData, outcome: str, *, visit: int = -1) -> ModelArrays:
    """Design arrays for ``outcome`` at ``visit`` (default the last) adjusted for baseline."""
    if outcome not in data.outcomes:
        raise ValueError(f"unknown outcome {outcome!r}; the data have {list(data.outcomes)}")
    values = data.outcomes[outcome]
    y = values[:, :, visit]
    baseline = values[:, :, 0]
    r, n = y.shape
    treated = data.treated
    mask = np.isfinite(y) & np.isfinite(baseline)
    columns = ["intercept", "treatment", "baseline"]
    indicators = []  # dummy columns: the same for every replicate
    if data.design in WITHIN_MUNICIPALITY:
        m = int(data.municipality.max()) + 1
        indicators += [data.municipality == j for j in range(1, m)]
        columns += [f"municipality[{name}]" for name in data.municipality_names[1:m]]
    n_periods = int(data.period.max()) + 1
    indicators += [data.period == j for j in range(1, n_periods)]
    columns += [f"period[{j}]" for j in range(1, n_periods)]
    # [fixed columns, treatment, baseline (centred), y], zero outside complete cases
    fixed = np.column_stack([np.ones(n), np.zeros((n, 2)), *indicators, np.zeros(n)])
    Xy = np.empty((r, n, fixed.shape[1]))
    _fill_design(fixed, treated, baseline, y, mask, Xy)
    X = Xy[..., :-1]
    if data.design in ("municipality", "stepped-wedge"):
        cluster = np.broadcast_to(data.municipality, (r, n)).copy()
    else:
        cluster = data.cohort
    fraction = data.sessions_attended / np.maximum(data.sessions_offered, 1)
    return ModelArrays(
        y=y,
        X=X,
        columns=tuple(columns),
        mask=mask,
        treated=treated,
        group=data.group,
        cluster=cluster,
        baseline=baseline,
        attended_fraction=fraction,
        Xy=Xy,
    )
