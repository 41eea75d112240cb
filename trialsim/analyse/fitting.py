"""Fit a batched design with any list of random-intercept terms on the engine that fits it.

* no term: least squares (classical SE, ``n - p`` df);
* one term: :func:`trialsim.analyse.reml.fit_reml_masked`;
* two terms, one nested in the other (e.g. participants within groups, groups within
  clusters): :func:`trialsim.analyse.reml_nested.fit_reml_nested` (the general engine gives the
  same fit: a repeated-measures SFT trial, participants within groups, 1.6 ms CPU per
  replicate here against 109 ms); with Kenward-Roger df the general engine (the nested one
  has Satterthwaite df only);
* otherwise the general engine ``trialsim.analyse.lmm.fit_lmm`` when installed; without it
  the model is refused with a one-line reason.

Every engine returns the coefficient vector and its covariance, so the joint covariance of
the arm contrasts (for Dunnett's adjustment) comes from the same fit as the estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.kenward_roger import check_df_method
from trialsim.errors import UserError


@dataclass(frozen=True)
class Fitted:
    """Estimates of column ``coef`` plus ``beta`` (R, p) and ``cov_beta`` (R, p, p)."""

    estimates: Estimates
    beta: np.ndarray
    cov_beta: np.ndarray
    engine: str


def _compact(ids: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Ids 0..G-1 per replicate over the used rows (-1 for none or unused)."""
    ids = np.where(used, ids, -1)
    n_rep = ids.shape[0]
    width = int(ids.max(initial=-1)) + 1
    out = np.full(ids.shape, -1, dtype=np.int64)
    has = ids >= 0
    if not has.any():
        return out
    key = (np.arange(n_rep)[:, None] * width + ids)[has]
    values, inverse = np.unique(key, return_inverse=True)
    first = np.searchsorted(values, np.arange(n_rep) * width)
    out[has] = inverse.ravel() - np.repeat(first, has.sum(axis=1))
    return out


def _nested_in(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Every inner unit (>= 0) lies within one outer unit (which may be -1: none)."""
    n_inner = int(inner.max(initial=-1)) + 1
    if n_inner == 0:
        return True
    has = inner >= 0
    key = (np.arange(len(inner))[:, None] * n_inner + inner)[has]
    lo = np.full(len(inner) * n_inner, np.iinfo(np.int64).max)
    hi = np.full(len(inner) * n_inner, np.iinfo(np.int64).min)
    np.minimum.at(lo, key, outer[has])
    np.maximum.at(hi, key, outer[has])
    seen = hi > np.iinfo(np.int64).min
    return bool((lo[seen] == hi[seen]).all())


def fit_terms(
    Xy: np.ndarray,
    used: np.ndarray,
    terms: tuple[tuple[str, np.ndarray], ...],
    *,
    coef: int = 1,
    analysis: str = "formula",
    level: float = 0.95,
    df: str = "satterthwaite",
) -> Fitted:
    """Fit ``y = X beta + sum_k u_k[term_k] + e`` by REML (OLS without terms).

    ``Xy`` (R, M, p + 1) zero outside ``used`` (R, M); ``terms`` ((name, ids (R, M)), ...),
    ids -1 where a row has no effect of that term. Variance components are named
    ``residual`` and by term. ``df``: ``"satterthwaite"`` or ``"kenward-roger"`` (SE and df;
    without terms both are the residual df of least squares). Raises ValueError for a model
    no available engine fits.
    """
    check_df_method(df)
    used = np.asarray(used, dtype=bool)
    ids = [(name, _compact(np.asarray(t), used)) for name, t in terms]
    if not ids:
        return _ols(Xy, used, coef, analysis, level)
    if len(ids) == 1:
        from trialsim.analyse.reml import fit_reml_masked

        ((name, g),) = ids
        fit = fit_reml_masked(Xy, g, used, coef=coef, analysis=analysis, level=level, df=df)
        est = _rename(fit.estimates, {"cluster": name})
        return Fitted(est, fit.beta, fit.cov_beta, "reml")
    general = _general_engine()
    if len(ids) == 2:
        (a, ga), (b, gb) = ids
        if _nested_in(gb, ga) and not _nested_in(ga, gb):
            outer, inner = (a, ga), (b, gb)
        elif _nested_in(ga, gb) and not _nested_in(gb, ga):
            outer, inner = (b, gb), (a, ga)
        else:
            outer = None
        if outer is not None and df == "satterthwaite":
            # the nested engine: same fit, ~70x faster than the general
            from trialsim.analyse.reml_nested import fit_reml_nested

            fit = fit_reml_nested(
                Xy, outer[1], inner[1], used, coef=coef, analysis=analysis, level=level
            )
            est = _rename(fit.estimates, {"cluster": outer[0], "group": inner[0]})
            return Fitted(est, fit.beta, fit.cov_beta, "reml-nested")
        if outer is None and _nested_in(ga, gb) and _nested_in(gb, ga):
            raise UserError(
                f"(1 | {a}) and (1 | {b}) split the rows identically: their variances "
                "cannot both be estimated; keep one"
            )
    if general is None:
        listed = " + ".join(f"(1 | {n})" for n, _ in ids)
        raise UserError(
            f"random terms {listed}: crossed or more than two random intercepts need the "
            "general mixed-model engine (trialsim.analyse.lmm), which this installation "
            "lacks; keep one term, or two nested ones"
        )
    fit = general(Xy, ids, used, coef=coef, analysis=analysis, level=level, df=df)
    return Fitted(fit.estimates, fit.beta, fit.cov_beta, "lmm")


def _general_engine():
    try:
        from trialsim.analyse.lmm import fit_lmm
    except ImportError:
        return None
    return fit_lmm


def _rename(est: Estimates, names: dict[str, str]) -> Estimates:
    return replace(est, variance={names.get(k, k): v for k, v in est.variance.items()})


def _ols(Xy, used, coef, analysis, level) -> Fitted:
    from trialsim.analyse.ols import ols_batch

    fit = ols_batch(np.where(used, Xy[..., -1], np.nan), Xy[..., :-1], used)
    p = Xy.shape[-1] - 1
    failed = fit.failed
    df = (fit.n_obs - p).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = fit.rss / df
    cov = s2[:, None, None] * fit.bread
    nan = np.full(len(s2), np.nan)
    est = Estimates.from_t(
        analysis,
        np.where(failed, nan, fit.beta[:, coef]),
        np.where(failed, nan, np.sqrt(cov[:, coef, coef])),
        np.where(failed, nan, df),
        level=level,
        variance={"residual": np.where(failed, nan, s2)},
        failed=failed,
    )
    return Fitted(est, fit.beta, cov, "ols")
