"""Exact posterior of the effect with two random-intercept terms (two variance ratios).

Model (one replicate), the nested model of :mod:`trialsim.analyse.reml_nested`::

    y = X beta + u_outer + v_inner + e,  u ~ N(0, tau_o^2),  v ~ N(0, tau_i^2),  e ~ N(0, sigma^2)

with every inner unit inside one outer unit (or in none). It covers

- repeated measures: participants (inner) within delivery groups or clusters (outer);
- groups within randomised clusters (a cluster-randomised trial treated in groups);
- a trainer who runs several groups (groups inner, trainers outer);
- arm-specific group variances, brms ``gr(group, by = arm)``: the groups of one arm are the
  outer term, those of the other the inner term (their rows never meet).

Priors are those of :mod:`trialsim.bayes.fast` with one SD prior per term (half-normal or
half-t, outcome units); a term given ``None`` is held at zero (the one-term posterior).

How it is computed: as in :mod:`trialsim.bayes.fast`, with ``u_o = tau_o / sigma`` and
``u_i = tau_i / sigma`` on a product of the 1-D trapezoid grids (uniform in
``t = u / (u + u0)``), the fixed effects integrated analytically (the profiled restricted
likelihood :func:`trialsim.analyse.reml_nested.profiled_pairs`, one Cholesky factor of a
``(p + 1)``-square matrix per node, whatever the number of rows) and ``log sigma`` by
Gauss-Hermite quadrature. The marginal posterior of the effect is a mixture of normals over
``(u_o, u_i, sigma)``.
"""

from __future__ import annotations

import numpy as np

from trialsim.analyse.reml_nested import nested_stats, profiled_pairs
from trialsim.bayes.fast import (
    N_SIGMA,
    FastPosterior,
    ScalePrior,
    _default_ratio_scale,
    _ratio_grid,
    _sigma_ols,
    mixture_posterior,
)
from trialsim.bayes.priors import EffectPrior
from trialsim.errors import UserError

__all__ = ["N_RATIO_2D", "fast_posterior_nested", "fast_posterior_terms", "nested_order"]

N_RATIO_2D = 40  # trapezoid nodes per ratio (1 600 nodes in all)
_BLOCK_NODES = 200_000  # replicates x nodes per block (arrays of ~100 MB at most)


def _axis(term_prior: ScalePrior | None, u0: float | None, sigma_ols: float, n: int):
    """Nodes ``u`` and log weights of one ratio: the trapezoid grid, or ``u = 0`` (weight 1)
    for a term held at zero."""
    if term_prior is None:
        return np.zeros(1), np.zeros(1)
    u0 = _default_ratio_scale(term_prior, sigma_ols) if u0 is None else u0
    u, du = _ratio_grid(u0, n)
    return u, np.log(np.where(du > 0, du, 1e-300))


def fast_posterior_nested(
    Xy: np.ndarray,
    outer: np.ndarray,
    inner: np.ndarray,
    used: np.ndarray,
    *,
    prior: EffectPrior,
    term_priors: tuple[ScalePrior | None, ScalePrior | None],
    coef: int = 1,
    ratio_scales: tuple[float | None, float | None] = (None, None),
    n_ratio: int = N_RATIO_2D,
    n_sigma: int = N_SIGMA,
) -> FastPosterior:
    """Exact posterior of coefficient ``coef`` for a batch with two nested terms.

    Parameters
    ----------
    Xy : (R, N, p + 1) ``[X, y]`` zero outside ``used`` (R, N) (``ModelArrays.Xy``).
    outer, inner : (R, N) or (N,) int unit ids, -1 for none; every inner unit within one
        outer unit (ValueError otherwise).
    prior : prior of the effect; term_priors : SD priors of the (outer, inner) terms, None
        to hold that term at zero.
    ratio_scales : ``u0`` of each grid (default ``min(0.5, 2 scale / sigma_ols)``).
    n_ratio, n_sigma : nodes per ratio and in ``log sigma``.

    Example
    -------
    >>> f = model_arrays(data, repeated_spec(data.structure, "psp", "last"))  # doctest: +SKIP
    >>> post = fast_posterior_nested(f.Xy, group, participant, f.used, prior=FLAT,
    ...     term_priors=(ScalePrior("half-normal", 6.5), ScalePrior("half-normal", 13)))
    """
    Xy = np.asarray(Xy, dtype=float)
    n_rep = Xy.shape[0]
    outer = np.broadcast_to(np.asarray(outer, dtype=np.int64), Xy.shape[:2])
    inner = np.broadcast_to(np.asarray(inner, dtype=np.int64), Xy.shape[:2])
    used = np.broadcast_to(np.asarray(used, dtype=bool), Xy.shape[:2])
    p = Xy.shape[-1] - 1
    coef = coef % p
    free = [t for t in term_priors if t is not None]
    n_nodes = n_ratio ** len(free) * n_sigma
    block = max(1, min(n_rep, _BLOCK_NODES // n_nodes))
    parts = []
    for a in range(0, n_rep, block):
        b = slice(a, min(a + block, n_rep))
        st = nested_stats(Xy[b], outer[b], inner[b], used[b], coef=coef)
        resid = (st.n_obs - p).astype(float)
        failed = resid < 1.0 + len(free)
        sigma_ols = _sigma_ols(st.cross, failed, np.maximum(resid, 1.0))
        (u_o, w_o), (u_i, w_i) = (
            _axis(tp, u0, sigma_ols, n_ratio)
            for tp, u0 in zip(term_priors, ratio_scales, strict=True)
        )
        uo, ui = (g.ravel() for g in np.meshgrid(u_o, u_i, indexing="ij"))
        log_du = (w_o[:, None] + w_i[None, :]).ravel()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            grid = profiled_pairs(st, uo**2, ui**2)
            ratio_sd = np.column_stack(
                [u for u, tp in ((uo, term_priors[0]), (ui, term_priors[1])) if tp is not None]
            )
            parts.append(
                mixture_posterior(
                    grid,
                    ratio_sd,
                    log_du,
                    prior=prior,
                    term_priors=tuple(free),
                    failed=failed,
                    n_sigma=n_sigma,
                )
            )
    if len(parts) == 1:
        return parts[0]
    return FastPosterior(
        weights=np.concatenate([x.weights for x in parts]),
        means=np.concatenate([x.means for x in parts]),
        sds=np.concatenate([x.sds for x in parts]),
        failed=np.concatenate([x.failed for x in parts]),
        prior=prior,
        group_prior=parts[0].group_prior,
    )


def nested_order(a: np.ndarray, b: np.ndarray) -> tuple[int, int] | None:
    """``(outer, inner)`` positions of two unit-id arrays (R, N) when one is nested in the
    other (the other's units each lie within one of its units), else None."""
    from trialsim.analyse.fitting import _nested_in

    if _nested_in(b, a) and not _nested_in(a, b):
        return 0, 1
    if _nested_in(a, b) and not _nested_in(b, a):
        return 1, 0
    return None


def fast_posterior_terms(
    Xy: np.ndarray,
    used: np.ndarray,
    terms: tuple[tuple[str, np.ndarray], ...],
    *,
    prior: EffectPrior,
    term_priors: tuple[ScalePrior, ...],
    coef: int = 1,
) -> FastPosterior:
    """The exact posterior of a model with one random-intercept term or two nested ones
    (``terms`` as :class:`trialsim.analyse.formula.FormulaArrays` holds them, one SD prior
    each). Raises ValueError for other models (MCMC fits them)."""
    from trialsim.bayes.fast import fast_posterior

    if len(terms) != len(term_priors):
        raise ValueError(f"{len(terms)} random terms need as many SD priors")
    Xy = np.asarray(Xy, dtype=float)
    if len(terms) == 1:
        y = np.where(used, Xy[..., -1], np.nan)
        return fast_posterior(
            y, Xy[..., :-1], terms[0][1], used, prior=prior, group_prior=term_priors[0], coef=coef
        )
    if len(terms) == 2:
        order = nested_order(np.where(used, terms[0][1], -1), np.where(used, terms[1][1], -1))
        if order is not None:
            o, i = order
            return fast_posterior_nested(
                Xy,
                terms[o][1],
                terms[i][1],
                used,
                prior=prior,
                term_priors=(term_priors[o], term_priors[i]),
                coef=coef,
            )
    listed = " + ".join(f"(1 | {name})" for name, _ in terms)
    raise UserError(
        f"--method exact covers one random intercept or two nested ones, not {listed}; "
        "use --method mcmc"
    )
