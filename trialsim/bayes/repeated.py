"""Bayesian repeated-measures model: every post-baseline visit, built from the trial structure.

The model is the frequentist ``repeated`` analysis's (:func:`trialsim.analyse.repeated.
repeated_spec`: the same rows, fixed effects and random-intercept terms), in brms notation::

    y ~ arm * factor(visit) + baseline + covariates + site + period
        + (1 | participant) [+ (1 | group)] [+ (1 | cluster)]

with the arm-by-visit coding of the estimand (``last``: the effect at the last visit;
``average``: the mean of the visit effects; ``constant``: one effect for every visit, no
interaction). Priors: the named effect prior on the estimand's coefficient, flat on the other
coefficients, ``p(sigma) ∝ 1/sigma``, and a half-normal (or half-t) SD prior per random term
(:meth:`trialsim.bayes.analysis.BayesSettings.term_priors`). MCMC samples the PyMC model of
:mod:`trialsim.bayes.models` (sufficient statistics, non-centred intercepts); the exact
posterior (:mod:`trialsim.bayes.fast_two`) covers one term or two nested ones.
"""

from __future__ import annotations

import math

import numpy as np

from trialsim.data import TrialData
from trialsim.errors import UserError


def repeated_arrays(data: TrialData, outcome: str, estimand: str):
    """``(spec, arrays)`` of the repeated-measures model of ``outcome``."""
    from trialsim.analyse.formula import model_arrays
    from trialsim.analyse.repeated import repeated_spec

    spec = repeated_spec(data.structure, outcome, estimand)
    return spec, model_arrays(data, spec)


def prior_scale(data: TrialData, outcome: str, rep: int = 0) -> float:
    """SD that sets prior scales: the baseline outcome's (measured before randomisation),
    without a baseline that of the first post-baseline visit in the reference arm."""
    values = data.outcomes[outcome][rep]
    if data.structure.has_baseline:
        x = values[:, 0]
    else:
        x = values[data.arm[rep if data.arm.shape[0] > 1 else 0] == 0, 0]
    sd = float(np.nanstd(x))
    if not (sd > 0 and math.isfinite(sd)):
        raise UserError("cannot set prior scales: the outcome has no spread")
    return sd


def centred_terms(roles: tuple[str, ...]) -> tuple[bool, ...]:
    """The parametrisation of each random term in MCMC: centred for participants (several
    visits each, with a participant SD usually larger than the residual SD, where the
    non-centred form mixes slowly: Papaspiliopoulos, Roberts & Sköld 2007, Stat Sci 22:59),
    non-centred for groups and clusters (small SDs, few rows per unit of information)."""
    return tuple(role == "participant" for role in roles)


def fit_repeated(
    data: TrialData,
    outcome: str,
    settings,
    *,
    method: str = "mcmc",
    rep: int = 0,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 20161,
    target_accept: float = 0.9,
    sampler: str = "auto",
):
    """Posterior of the repeated-measures treatment effect (``settings.estimand``) of
    replicate ``rep``: a :class:`trialsim.bayes.analysis.BayesResult`."""
    from trialsim.bayes.analysis import BayesResult, exact_summary

    spec, f = repeated_arrays(data, outcome, settings.estimand)
    sd = prior_scale(data, outcome, rep)
    prior, _ = settings.priors(sd)
    roles = tuple(r.role for r in spec.random)
    term_priors = settings.term_priors(roles, sd)
    names = tuple(name for name, _ in f.terms)
    by_name = dict(zip(names, term_priors, strict=True))
    if settings.residual != "normal" and method == "exact":
        raise UserError("--method exact covers normal residuals; use --method mcmc")
    common = dict(term_priors=by_name, model_text=spec.lme4())
    if method == "exact":
        from trialsim.bayes.fast_two import fast_posterior_terms

        sl = slice(rep, rep + 1)
        post = fast_posterior_terms(
            f.Xy[sl],
            f.used[sl],
            tuple((name, ids[sl]) for name, ids in f.terms),
            prior=prior,
            term_priors=term_priors,
        )
        summary = exact_summary(post, settings)
        summary["n_used"] = int(f.used[rep].sum())
        return BayesResult(
            outcome, settings, prior, term_priors[0], summary, None, {"method": "exact"}, **common
        )
    if method != "mcmc":
        raise ValueError(f"--method must be mcmc or exact, got {method!r}")
    from trialsim.bayes.analysis import mcmc_result
    from trialsim.bayes.models import terms_input

    # participants have several rows each, usually informative about their level: centred
    inp = terms_input(f.Xy, f.used, f.columns, f.terms, rep, centred=centred_terms(roles))
    return mcmc_result(
        inp, outcome, settings, prior, term_priors[0], draws=draws, tune=tune, chains=chains,
        seed=seed, target_accept=target_accept, sampler=sampler, sd_priors=term_priors, **common,
    )  # fmt: skip
