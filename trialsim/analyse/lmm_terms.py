"""The random-intercept terms a trial's structure calls for (the ``lmm`` analysis).

From :class:`~trialsim.structure.TrialStructure` and the data's ids:

* delivery groups: one term ``group`` (lme4 ``(1 | group)``, rows without a group are in no
  term) when ``group_variance == "common"``; one term per arm with groups, ``group[ARM]``
  (lme4 ``(0 + armA | group) + (0 + armB | group)``), when it is ``"by-arm"``;
* the randomised cluster (named after it, e.g. ``municipality``), when clusters were
  randomised and are not themselves the delivery groups;
* ``trainer`` (crossed with the rest), when the structure records trainers.

A term with no member in the data, or splitting the rows exactly as an earlier term does (not
identifiable beside it), is left out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.lmm import fit_lmm
from trialsim.analyse.prepare import ModelArrays, ancova_arrays
from trialsim.analyse.reml import fit_reml_masked
from trialsim.data import TrialData


def structure_terms(data: TrialData, a: ModelArrays) -> list[tuple[str, np.ndarray]]:
    """``[(name, ids (R, N))]`` for :func:`trialsim.analyse.lmm.fit_lmm`, in the order
    cluster, groups, trainer (-1: the row is not in the term)."""
    st = data.structure
    terms: list[tuple[str, np.ndarray]] = []
    if st.cluster_randomised and not st.groups_are_clusters:
        terms.append((st.cluster, a.cluster))
    if st.has_groups:
        if st.group_variance == "by-arm":
            for k, arm in enumerate(st.arms):
                if arm in st.group_arms:
                    terms.append((f"group[{arm}]", np.where(data.arm == k, a.group, -1)))
        else:
            terms.append(("group", a.group))
    if st.trainers:
        terms.append(("trainer", np.broadcast_to(data.trainer, a.group.shape)))
    kept: list[tuple[str, np.ndarray]] = []
    for name, ids in terms:
        ids = np.where(a.mask, ids, -1)
        if (ids >= 0).any() and not any(_same_partition(ids, other) for _, other in kept):
            kept.append((name, ids))
    return kept


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ids ``a`` and ``b`` (R, N; -1 none) split every replicate's rows the same."""
    return bool(((a < 0) == (b < 0)).all() and _determines(a, b) and _determines(b, a))


def _determines(a: np.ndarray, b: np.ndarray) -> bool:
    """True when, in every replicate, all rows of a level of ``a`` share one level of ``b``."""
    rows = a >= 0
    width = int(a.max(initial=-1)) + 1
    key = (np.arange(len(a))[:, None] * width + a)[rows]
    low = np.full(len(a) * width, np.iinfo(np.int64).max)
    high = np.full(len(a) * width, np.iinfo(np.int64).min)
    np.minimum.at(low, key, b[rows])
    np.maximum.at(high, key, b[rows])
    return bool((low[key] == high[key]).all())


def lmm_analysis(data: TrialData, outcome: str, df: str = "satterthwaite") -> Estimates:
    """The ``lmm`` analysis: the ANCOVA design with a random intercept for every term of
    :func:`structure_terms`, REML, Satterthwaite df. One term goes through the one-term fast
    path (:func:`trialsim.analyse.reml.fit_reml_masked`), several through
    :func:`trialsim.analyse.lmm.fit_lmm`; none: ANCOVA (OLS, residual df). ``df``:
    ``"satterthwaite"`` or ``"kenward-roger"``."""
    a = ancova_arrays(data, outcome)
    terms = structure_terms(data, a)
    if not terms:
        from trialsim.analyse.ols import fit_ols

        return fit_ols(a.y, a.X, a.mask, analysis="lmm")
    if len(terms) == 1:
        name, ids = terms[0]
        est = fit_reml_masked(a.Xy, ids, a.mask, analysis="lmm", df=df).estimates
        variance = {"residual": est.variance["residual"], name: est.variance["cluster"]}
        return replace(est, variance=variance)
    return fit_lmm(a.Xy, terms, a.mask, analysis="lmm", df=df).estimates
