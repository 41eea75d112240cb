"""Bayesian analysis of one trial-data set: resolve priors, fit by MCMC or exactly, summarise.

This is the library function behind ``trialsim bayes``::

    from trialsim.data import read_trial_data
    from trialsim.bayes.analysis import BayesSettings, fit_trial
    result = fit_trial(read_trial_data("trial.csv"), "psp",
                       BayesSettings.resolve(prior="sceptical", mcid=7.0))
    result.summary["p_beyond_mcid"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trialsim.analyse.prepare import ModelArrays, ancova_arrays
from trialsim.bayes.fast import ScalePrior, fast_posterior
from trialsim.bayes.models import MODELS, RESIDUALS, model_input
from trialsim.bayes.priors import DEFAULT_TAIL, EffectPrior, resolve_prior
from trialsim.bayes.summary import summarise
from trialsim.data import TrialData
from trialsim.errors import UserError

GROUP_SD_SCALE = 0.5  # default group-SD prior: half-normal with scale = 0.5 outcome SDs
# default participant-SD prior of the repeated-measures model: half-normal with scale = 1
# outcome SD (a participant's level is usually the largest part of the outcome's variance:
# correlations between visits of 0.4-0.8)
PARTICIPANT_SD_SCALE = 1.0


def parse_group_prior(spec: str | None, outcome_sd: float) -> ScalePrior:
    """``half-normal:SCALE`` or ``half-t:NU,SCALE`` (outcome units); None for the default
    half-normal with scale = half the outcome SD."""
    if spec is None:
        return ScalePrior("half-normal", GROUP_SD_SCALE * outcome_sd)
    family, _, params = spec.strip().lower().partition(":")
    try:
        values = [float(v) for v in params.split(",")]
    except ValueError:
        values = []
    if family == "half-normal" and len(values) == 1:
        return ScalePrior("half-normal", values[0])
    if family == "half-t" and len(values) == 2:
        return ScalePrior("half-t", values[1], nu=values[0])
    raise UserError(
        f"group-SD prior {spec!r}: expected half-normal:SCALE or half-t:NU,SCALE, "
        "e.g. half-normal:6.5"
    )


@dataclass(frozen=True)
class BayesSettings:
    """Unresolved analysis choices; priors are resolved against the data's outcome SD."""

    model: str = "partially-nested"
    prior: str = "weakly-informative"
    mcid: float | None = None  # positive, outcome units
    better: str | None = "higher"
    tail: float = DEFAULT_TAIL
    group_prior: str | None = None
    rope: tuple[float, float] | None = None
    residual: str = "normal"
    estimand: str = "last"  # repeated measures: the effect at the last visit, average, constant

    def __post_init__(self) -> None:
        from trialsim.analyse.repeated import ESTIMANDS

        if self.estimand not in ESTIMANDS:
            raise ValueError(f"--estimand must be one of {', '.join(ESTIMANDS)}")
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.residual not in RESIDUALS:
            raise ValueError(f"--residual must be one of {', '.join(RESIDUALS)}")
        if self.better not in ("higher", "lower"):
            raise UserError(f"--better must be higher or lower, got {self.better!r}")
        if self.mcid is not None and not (self.mcid > 0 and math.isfinite(self.mcid)):
            raise UserError(
                f"--mcid must be a positive number of outcome units, got {self.mcid} (the "
                "direction comes from --better)"
            )
        if self.rope is not None and not self.rope[0] < self.rope[1]:
            raise UserError(f"--rope LOW,HIGH needs LOW < HIGH, got {self.rope}")

    @property
    def signed_mcid(self) -> float | None:
        if self.mcid is None:
            return None
        return self.mcid if self.better == "higher" else -self.mcid

    def priors(self, outcome_sd: float) -> tuple[EffectPrior, ScalePrior]:
        effect = resolve_prior(self.prior, mcid=self.signed_mcid, scale=outcome_sd, tail=self.tail)
        return effect, parse_group_prior(self.group_prior, outcome_sd)

    def term_priors(self, roles: tuple[str, ...], outcome_sd: float) -> tuple[ScalePrior, ...]:
        """SD priors of random-intercept terms with the given roles: ``--group-prior`` for
        every term when given; else half-normal with scale 1 outcome SD for participants and
        0.5 for groups and clusters (the one place these defaults are chosen)."""
        if self.group_prior is not None:
            return (parse_group_prior(self.group_prior, outcome_sd),) * len(roles)
        return tuple(
            ScalePrior(
                "half-normal",
                (PARTICIPANT_SD_SCALE if role == "participant" else GROUP_SD_SCALE) * outcome_sd,
            )
            for role in roles
        )

    @classmethod
    def from_scenario(cls, scenario, outcome: str, **overrides) -> BayesSettings:
        """Settings from a scenario's outcome (mcid, better) and ``[analysis]`` part; keyword
        arguments that are not None override them."""
        return cls.for_outcome(scenario.structure, outcome, scenario.analysis, **overrides)

    @classmethod
    def for_outcome(cls, structure, outcome: str, priors=None, **overrides) -> BayesSettings:
        """Settings from the outcome's spec in ``structure`` (MCID, direction of benefit),
        a scenario's ``[analysis]`` priors (or None) and overrides that are not None.

        Raises ``ValueError`` when nobody declared the direction of benefit: P(benefit) would
        otherwise be a guess.
        """
        spec = structure.outcome(outcome)
        base = {
            "mcid": spec.mcid,
            "better": spec.better,
            "prior": priors.prior if priors else "weakly-informative",
            "tail": priors.sceptical_tail if priors else DEFAULT_TAIL,
            "group_prior": priors.group_sd_prior if priors else None,
            "rope": tuple(priors.rope) if priors and priors.rope else None,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        if base["better"] is None:
            raise UserError(
                f"the direction of benefit of {outcome!r} is not declared; add --better higher "
                "or --better lower (or --scenario FILE naming it)"
            )
        return cls(**base)


def default_model(structure, outcome: str) -> tuple[str, str]:
    """The Bayesian model for an outcome, from the one default rule
    (:func:`trialsim.analyse.registry.default_analysis`): ``(model, reason)``.

    The Bayesian models have normal (or Student-t) residuals; counts and binary outcomes are
    refused unless declared continuous, so a Gaussian model is never fitted to them silently.
    """
    from trialsim.analyse.registry import default_analysis

    choice = default_analysis(structure, outcome)
    if not structure.outcome(outcome).gaussian:
        raise UserError(
            f"{outcome!r} is a {structure.outcome(outcome).type} outcome and the Bayesian models "
            f"have normal residuals: use 'trialsim analyse' ({choice.name}), or declare "
            f"--outcome-type {outcome}=continuous to model it on its own scale"
        )
    model = "cluster" if choice.name == "mixed-cluster" else "partially-nested"
    if structure.n_periods > 1:
        model = "stepped-wedge"
    return model, choice.reason


def outcome_sd(a: ModelArrays, rep: int = 0) -> float:
    """SD of the baseline outcome (measured before randomisation: sets prior scales); without
    a baseline, the SD of the outcome in the reference arm."""
    if "baseline" in a.columns:
        sd = float(np.nanstd(a.baseline[rep]))
    else:
        sd = float(np.nanstd(a.y[rep][a.mask[rep] & ~a.treated[rep]]))
    if not (sd > 0 and math.isfinite(sd)):
        raise UserError("cannot set prior scales: the outcome has no spread")
    return sd


def random_effect_units(a: ModelArrays, model: str) -> np.ndarray:
    return a.cluster if model in ("cluster", "stepped-wedge") else a.group


@dataclass
class BayesResult:
    """What ``trialsim bayes`` reports: settings, resolved priors, summary, InferenceData."""

    outcome: str
    settings: BayesSettings
    prior: EffectPrior
    group_prior: ScalePrior
    summary: dict
    idata: object | None = None
    sampler: dict = field(default_factory=dict)
    term_priors: dict[str, ScalePrior] | None = None  # several random terms: SD prior each
    model_text: str | None = None  # the model in lme4 notation, when built from a spec

    def as_dict(self) -> dict:
        extra = {}
        if self.term_priors is not None:
            extra["sd_priors"] = {k: v.describe() for k, v in self.term_priors.items()}
        if self.model_text is not None:
            extra["lme4"] = self.model_text
            extra["estimand"] = self.settings.estimand
        return {
            **extra,
            "outcome": self.outcome,
            "model": self.settings.model,
            "residual": self.settings.residual,
            "better": self.settings.better,
            "mcid": self.settings.mcid,
            "rope": self.settings.rope,
            "prior": self.prior.as_dict(),
            "prior_text": self.prior.describe(),
            "group_sd_prior": self.group_prior.describe(),
            **self.summary,
            "sampler": self.sampler,
        }


def fit_trial(
    data: TrialData,
    outcome: str,
    settings: BayesSettings,
    *,
    method: str = "mcmc",
    rep: int = 0,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 20161,
    target_accept: float = 0.9,
    sampler: str = "auto",
    arrays: ModelArrays | None = None,
) -> BayesResult:
    """Fit the Bayesian model of ``settings.model`` to replicate ``rep`` of ``data``.

    ``arrays`` replaces the default ANCOVA design (e.g. :func:`formula_arrays` of a
    ``--formula`` model with one random intercept).

    ``method="exact"`` uses the quadrature posterior of :mod:`trialsim.bayes.fast` (Gaussian
    partially nested or cluster models only); ``"mcmc"`` samples the PyMC model.
    """
    if settings.model == "repeated":
        from trialsim.bayes.repeated import fit_repeated

        return fit_repeated(
            data,
            outcome,
            settings,
            method=method,
            rep=rep,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            target_accept=target_accept,
            sampler=sampler,
        )
    a = ancova_arrays(data, outcome) if arrays is None else arrays
    sd = outcome_sd(a, rep)
    prior, group_prior = settings.priors(sd)
    if method == "exact":
        if settings.model == "dose" or settings.residual != "normal":
            raise UserError(
                "--method exact covers the Gaussian partially-nested, cluster and stepped-wedge "
                "models; use --method mcmc for dose or student-t"
            )
        model_input(a, rep, settings.model)  # same input checks as MCMC
        units = random_effect_units(a, settings.model)
        sl = slice(rep, rep + 1)
        post = fast_posterior(
            a.y[sl], a.X[sl], units[sl], a.mask[sl], prior=prior, group_prior=group_prior
        )
        summary = exact_summary(post, settings)
        info = {"method": "exact"}
        return BayesResult(outcome, settings, prior, group_prior, summary, None, info)
    if method != "mcmc":
        raise ValueError(f"--method must be mcmc or exact, got {method!r}")
    inp = model_input(a, rep, settings.model)
    return mcmc_result(
        inp, outcome, settings, prior, group_prior, draws=draws, tune=tune, chains=chains,
        seed=seed, target_accept=target_accept, sampler=sampler,
    )  # fmt: skip


def mcmc_result(
    inp,
    outcome,
    settings,
    prior,
    group_prior,
    *,
    draws,
    tune,
    chains,
    seed,
    target_accept,
    sampler,
    sd_priors=None,
    **fields,
) -> BayesResult:
    """Sample the model of ``inp`` (``sd_priors``: one SD prior per random term when there are
    several) and report it as a :class:`BayesResult` with the extra ``fields`` (term_priors,
    model_text)."""
    from trialsim.bayes.sampling import sample_model

    run = sample_model(
        inp,
        prior=prior,
        group_prior=group_prior,
        term_priors=sd_priors,
        residual=settings.residual,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        sampler=sampler,
    )
    summary = summarise(run.idata, mcid=settings.mcid, rope=settings.rope, better=settings.better)
    summary["n_used"] = inp.n_used
    info = mcmc_info(run, draws=draws, tune=tune, chains=chains, seed=seed, ta=target_accept)
    return BayesResult(outcome, settings, prior, group_prior, summary, run.idata, info, **fields)


def mcmc_info(run, *, draws, tune, chains, seed, ta) -> dict:
    """How an MCMC posterior was obtained (the ``sampler`` entry of a result)."""
    return {
        "method": "mcmc",
        "sampler": run.sampler,
        "compiled_now": run.compiled_now,
        "seconds": round(run.seconds, 3),
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": seed,
        "target_accept": ta,
    }


def exact_summary(post, settings: BayesSettings, level: float = 0.95) -> dict:
    """Summary of a one-replicate :class:`~trialsim.bayes.fast.FastPosterior`."""
    sign = 1.0 if settings.better == "higher" else -1.0
    lo, hi = post.interval(level)
    p_gt0 = float(post.prob_greater(0.0)[0])
    out = {
        "parameters": [
            {
                "parameter": "effect",
                "mean": float(post.mean[0]),
                "sd": float(post.sd[0]),
                "ci_low": float(lo[0]),
                "ci_high": float(hi[0]),
            }
        ],
        "interval": f"{level:.0%} equal-tailed",
        "p_benefit": p_gt0 if sign > 0 else 1.0 - p_gt0,
    }
    if settings.mcid is not None:
        m = settings.signed_mcid
        p = float(post.prob_greater(m)[0])
        out["p_beyond_mcid"] = p if sign > 0 else 1.0 - p
    if settings.rope is not None:
        out["p_in_rope"] = float(post.cdf(settings.rope[1])[0] - post.cdf(settings.rope[0])[0])
    return out


@dataclass
class ContrastsResult:
    """Every arm against the reference: one :class:`BayesResult` per contrast (``results``,
    in the structure's order), and with MCMC the joint posterior's P(each arm is the best)
    (the reference included; "best" in the declared direction of benefit)."""

    results: dict[str, BayesResult]
    p_best: dict[str, float] | None
    note: str

    def as_dict(self) -> dict:
        return {
            "contrasts": {name: r.as_dict() for name, r in self.results.items()},
            "p_best": self.p_best,
            "note": self.note,
        }


def fit_contrasts(
    data: TrialData,
    outcome: str,
    settings: BayesSettings,
    *,
    method: str = "mcmc",
    spec=None,
    **options,
) -> ContrastsResult:
    """Each non-reference arm against the reference.

    MCMC: one joint fit (every arm in the design, each arm's effect with the named prior)
    gives every contrast's posterior and P(best arm). Exact: one quadrature posterior per
    contrast (that contrast's effect with the named prior, the other arms' coefficients flat:
    the same posterior as MCMC with a flat prior; with an informative prior it differs from
    the joint fit by the other arms' priors); P(best) then needs MCMC. ``spec``: a formula
    model (:func:`formula_arrays`) instead of the default design.
    """
    st = data.structure
    contrasts = st.contrasts
    ref = st.reference

    def arrays(d):
        return ancova_arrays(d, outcome) if spec is None else formula_arrays(d, spec)

    def fit(d, how):
        return fit_trial(d, outcome, settings, method=how, arrays=arrays(d), **options)

    if method == "exact" or st.n_arms == 2:
        results = {f"{arm} - {ref}": fit(data.for_contrast(arm), method) for arm in contrasts}
        note = (
            "exact posterior per contrast (other arms' coefficients flat); P(best) needs "
            "--method mcmc"
            if method == "exact" and st.n_arms > 2
            else ""
        )
        p_best = _p_best_two(results, settings) if st.n_arms == 2 and method == "mcmc" else None
        return ContrastsResult(results, p_best, note)
    first = data.for_contrast(contrasts[0])
    joint = fit(first, "mcmc")
    draws = np.asarray(joint.idata.posterior["arm_effects"].values)  # (chain, draw, k - 1)
    draws = draws.reshape(-1, draws.shape[-1])
    a = arrays(first)
    labels = [contrasts[0]] + [c[4:-1] for c in a.columns if c.startswith("arm[")]
    results = {}
    sign = 1.0 if settings.better == "higher" else -1.0
    for j, arm in enumerate(labels):
        summary = _draws_summary(draws[:, j], settings)
        summary["diagnostics"] = joint.summary.get("diagnostics")
        results[f"{arm} - {ref}"] = BayesResult(
            outcome, settings, joint.prior, joint.group_prior, summary, None, joint.sampler
        )
    with_ref = np.column_stack([np.zeros(len(draws)), draws]) * sign
    best = np.argmax(with_ref, axis=1)
    names = [ref, *labels]
    p_best = {name: float(np.mean(best == i)) for i, name in enumerate(names)}
    order = [f"{arm} - {ref}" for arm in contrasts if f"{arm} - {ref}" in results]
    note = "joint MCMC fit: every arm's effect with the named prior"
    return ContrastsResult({k: results[k] for k in order}, p_best, note)


def _draws_summary(draws: np.ndarray, settings: BayesSettings, level: float = 0.95) -> dict:
    from trialsim.bayes.summary import posterior_probabilities

    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {
        "parameters": [
            {
                "parameter": "effect",
                "mean": float(draws.mean()),
                "sd": float(draws.std(ddof=1)),
                "ci_low": float(lo),
                "ci_high": float(hi),
            }
        ],
        "interval": f"{level:.0%} equal-tailed",
        **posterior_probabilities(
            draws, mcid=settings.mcid, rope=settings.rope, better=settings.better
        ),
    }


def _p_best_two(results: dict, settings: BayesSettings) -> dict | None:
    ((name, result),) = results.items()
    arm, ref = name.split(" - ")
    p = result.summary.get("p_benefit")
    return None if p is None else {ref: 1.0 - p, arm: p}


def formula_arrays(data: TrialData, spec) -> ModelArrays:
    """The design of a formula model (:class:`~trialsim.analyse.formula.ModelSpec`) in the
    layout the Bayesian models take: its one random intercept (if any) is the random-effect
    unit of both the partially-nested and the cluster model; rows are participants, or
    participants x visits for a repeated-measures model."""
    from trialsim.analyse.formula import model_arrays

    if len(spec.random) > 1:
        raise UserError(
            f"--formula {spec.text!r}: the Bayesian models have one random intercept; keep one "
            "term (or use 'trialsim analyse --formula' for several)"
        )
    f = model_arrays(data, spec)
    X = f.Xy[..., :-1]
    y = np.where(f.used, f.Xy[..., -1], np.nan)
    units = f.terms[0][1] if f.terms else np.full(f.used.shape, -1)
    columns = list(f.columns)
    baseline = np.full(f.used.shape, np.nan)
    for t in spec.fixed:
        if t.kind == "baseline" and t.label in columns:
            j = columns.index(t.label)
            baseline = np.where(f.used, X[..., j], np.nan)
            columns[j] = "baseline"
    return ModelArrays(
        y=y,
        X=X,
        columns=tuple(columns),
        mask=f.used,
        treated=X[..., 1] > 0,
        group=units,
        cluster=units,
        baseline=baseline,
        attended_fraction=np.zeros(f.used.shape),
        Xy=f.Xy,
    )
