"""Assurance and Bayesian operating characteristics of a decision rule (docs/analyses.md).

Assurance is the probability that the trial succeeds, averaged over a *design prior* for the
parameters of nature (O'Hagan, Stevens & Campbell 2005, Pharm Stat 4:187)::

    assurance = E_theta[ P(decision | theta) ].

It is estimated by nested Monte Carlo: ``M`` parameter draws ``theta_j`` from the design prior,
``m`` simulated trials for each (replicates of one simulator block, so the draws cost one
block each), the decision taken on each trial's exact fast posterior
(:mod:`trialsim.bayes.fast`). Its Monte Carlo SE is ``sd_j(success rate_j) / sqrt(M)``, which
accounts for both levels. The operating characteristics of the rule are its probability with
the effect fixed at 0 (a Bayesian type-I error) and with the intention-to-treat effect at the
MCID (the scenario's full-attendance effect divided by the mean dose factor), other design
priors still drawn. A subset of trials can be re-analysed by MCMC as a check.
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.registry import DefaultChoice
from trialsim.bayes.analysis import BayesSettings, random_effect_units
from trialsim.bayes.distributions import DesignPrior
from trialsim.bayes.fast import fast_posterior
from trialsim.errors import UserError
from trialsim.scenario import Scenario, apply_overrides, scenario_from_dict
from trialsim.seeds import BLOCK_SIZE, scenario_key

QUANTITIES = ("p_benefit", "p_beyond_mcid", "p_in_rope", "posterior_mean")
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_TERM = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")
DESIGN_PRIOR_STREAM = 0xA55E  # spawn key of the design-prior draws (not a simulator component)


@dataclass(frozen=True)
class Decision:
    """A conjunction of terms ``quantity op threshold``, e.g. ``p_beyond_mcid>0.8``."""

    terms: tuple[tuple[str, str, float], ...]

    @property
    def text(self) -> str:
        return " and ".join(f"{q}{op}{t:g}" for q, op, t in self.terms)

    @property
    def quantities(self) -> set[str]:
        return {q for q, _, _ in self.terms}

    def __call__(self, values: dict[str, np.ndarray]) -> np.ndarray:
        ok = None
        for q, op, t in self.terms:
            hit = _OPS[op](values[q], t)
            ok = hit if ok is None else ok & hit
        return ok


def parse_decision(text: str) -> Decision:
    """Parse ``"p_beyond_mcid>0.8"`` or ``"p_benefit>0.95 and p_beyond_mcid>0.5"``."""
    terms = []
    for part in re.split(r"\s+and\s+|&", text.strip()):
        m = _TERM.match(part)
        if not m or m.group(1) not in QUANTITIES:
            raise UserError(
                f"--decision {text!r}: expected QUANTITY>NUMBER (also >=, <, <=, joined by "
                f"'and') with QUANTITY one of {', '.join(QUANTITIES)}, e.g. p_beyond_mcid>0.8"
            )
        terms.append((m.group(1), m.group(2), float(m.group(3))))
    return Decision(tuple(terms))


def resolve_design_key(key: str, outcome: str) -> str:
    """``effect`` and ``icc`` are short for the outcome's effect and the group ICC; any other
    key is a dotted scenario key such as ``dropout.completion_target``."""
    return {"effect": f"outcomes.{outcome}.effect", "icc": "groups.icc_group"}.get(key, key)


def posterior_quantities(post, settings: BayesSettings) -> dict[str, np.ndarray]:
    """Decision quantities of a batch of fast posteriors (direction from ``settings.better``)."""
    sign = 1.0 if settings.better == "higher" else -1.0
    gt0 = post.prob_greater(0.0)
    out = {"posterior_mean": post.mean, "p_benefit": gt0 if sign > 0 else 1.0 - gt0}
    if settings.mcid is not None:
        p = post.prob_greater(settings.signed_mcid)
        out["p_beyond_mcid"] = p if sign > 0 else 1.0 - p
    if settings.rope is not None:
        out["p_in_rope"] = post.cdf(settings.rope[1]) - post.cdf(settings.rope[0])
    return out


@dataclass
class AssuranceResult:
    decision: str
    assurance: float
    assurance_mcse: float
    p_success_null: float
    p_success_null_mcse: float
    p_success_mcid: float | None
    p_success_mcid_mcse: float | None
    n_draws: int
    reps_per_draw: int
    failed: int
    draws: list[dict] = field(default_factory=list)
    mcmc_check: dict | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _check_gaussian(structure, outcome: str) -> None:
    from trialsim.analyse.registry import default_analysis

    spec = structure.outcome(outcome)
    if not spec.gaussian:
        raise UserError(
            f"assurance uses the exact Gaussian posterior; {outcome!r} is a {spec.type} "
            f"outcome (its default analysis is {default_analysis(structure, outcome).name}): "
            "choose a continuous outcome with --outcome"
        )


def _better_message(outcome: str) -> str:
    return (
        f"the direction of benefit of {outcome!r} is not declared; give --better higher or "
        f"--better lower (or outcomes.{outcome}.better in the scenario)"
    )


def assurance_settings(
    scenario: Scenario,
    outcome: str,
    *,
    better: str | None = None,
    model: str | None = None,
    **overrides,
) -> tuple[BayesSettings, DefaultChoice]:
    """The analysis settings of an assurance run, from the trial's structure: the direction
    of benefit and MCID from the outcome spec (``structure.outcomes[outcome]``), ``better``
    overriding it; the model from the one default rule
    (:func:`trialsim.analyse.registry.default_analysis`, via
    :func:`trialsim.bayes.analysis.default_model`) unless ``model`` is given. Returns the
    settings and the default choice (printed with the result).

    Raises ``ValueError`` when the direction of benefit is declared nowhere (asks for
    ``--better``) or the outcome is not continuous.
    """
    from trialsim.analyse.registry import default_analysis
    from trialsim.bayes.analysis import default_model

    st = scenario.structure
    spec = st.outcome(outcome)
    _check_gaussian(st, outcome)
    if better is not None:
        st = st.with_outcome(replace(spec, better=better))
    elif spec.better is None:
        raise UserError(_better_message(outcome))
    choice = default_analysis(st, outcome)
    chosen, _ = default_model(st, outcome)
    settings = BayesSettings.for_outcome(
        st, outcome, scenario.analysis, model=model or chosen, **overrides
    )
    return settings, choice


def _scenario_with(raw: dict, values: dict[str, float]) -> Scenario:
    items = [f"{k}={v!r}" for k, v in values.items()]
    return scenario_from_dict(apply_overrides(raw, items), source="design prior draw")


def _evaluate_draw(raw, values, outcome, settings, decision, prior, group_prior, block, m, seed):
    from trialsim.simulate.trial import simulate_trials

    s = _scenario_with(raw, values)
    reps = block * BLOCK_SIZE + np.arange(m)
    data = simulate_trials(s, reps, seed=seed, threads=1)
    a = ancova_arrays(data, outcome)
    units = random_effect_units(a, settings.model)
    post = fast_posterior(a.y, a.X, units, a.mask, prior=prior, group_prior=group_prior)
    q = posterior_quantities(post, settings)
    success = decision(q) & ~post.failed
    return success, post.failed, (a, q)


def run_assurance(
    scenario: Scenario,
    outcome: str,
    design_priors: dict[str, DesignPrior],
    decision: Decision,
    settings: BayesSettings | None,
    *,
    n_draws: int,
    reps_per_draw: int = 16,
    seed: int = 20161,
    check_mcmc: int = 0,
    mcmc_draws: int = 1000,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> AssuranceResult:
    """Assurance of ``decision`` over ``design_priors`` and its operating characteristics.

    Parameters
    ----------
    scenario, outcome : the planned trial and the (bounded, Gaussian-analysed) outcome.
    design_priors : scenario key (``effect``, ``icc`` or a dotted key) -> design prior.
    decision : the success rule on each trial's posterior.
    settings : model and priors of the analysis (the prior scale is the outcome's SD); None:
        :func:`assurance_settings` (direction of benefit and MCID from the trial structure's
        outcome spec, model from the one default rule).
    n_draws : parameter draws M; ``reps_per_draw`` trials m for each (at most 256).
    check_mcmc : re-analyse this many trials by NUTS and compare the decision quantities.
    """
    _check_gaussian(scenario.structure, outcome)
    if settings is None:
        settings, _ = assurance_settings(scenario, outcome)
    o = scenario.outcomes[outcome]
    if settings.model not in ("partially-nested", "cluster", "stepped-wedge"):
        raise UserError(
            "assurance uses the exact Gaussian posterior: --model partially-nested, "
            "cluster or stepped-wedge"
        )
    if not 1 <= reps_per_draw <= BLOCK_SIZE:
        raise UserError(f"--per-draw must be in [1, {BLOCK_SIZE}], got {reps_per_draw}")
    if "p_beyond_mcid" in decision.quantities and settings.mcid is None:
        raise UserError("the decision uses p_beyond_mcid: give --mcid or outcomes.<name>.mcid")
    if "p_in_rope" in decision.quantities and settings.rope is None:
        raise UserError("the decision uses p_in_rope: give --rope LOW,HIGH, e.g. --rope=-2,2")
    prior, group_prior = settings.priors(o.sd)
    raw = scenario.model_dump(mode="json", exclude_none=True)
    keys = {resolve_design_key(k, outcome): d for k, d in design_priors.items()}
    ss = np.random.SeedSequence(seed, spawn_key=(scenario_key(scenario.name), DESIGN_PRIOR_STREAM))
    rng = np.random.default_rng(ss)
    theta = {k: d.sample(n_draws, rng=rng) for k, d in keys.items()}
    effect_key = f"outcomes.{outcome}.effect"

    def values_for(j: int, effect: float | None) -> dict[str, float]:
        v = {k: float(x[j]) for k, x in theta.items()}
        if effect is not None:
            v[effect_key] = effect
        return v

    from trialsim.power.simulation import mean_dose_factor

    effects = {"design": None, "null": 0.0}
    if settings.mcid is not None:
        effects["mcid"] = settings.signed_mcid / mean_dose_factor(scenario)
    jobs = [(name, j) for name in effects for j in range(n_draws)]

    def job(item):
        name, j = item
        out = _evaluate_draw(
            raw,
            values_for(j, effects[name]),
            outcome,
            settings,
            decision,
            prior,
            group_prior,
            j,
            reps_per_draw,
            seed,
        )
        if progress is not None:
            progress(reps_per_draw)
        return out

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        results = dict(zip(jobs, pool.map(job, jobs), strict=True))

    def rate(name):
        per_draw = np.array([results[(name, j)][0].mean() for j in range(n_draws)])
        mcse = per_draw.std(ddof=1) / math.sqrt(n_draws) if n_draws > 1 else math.nan
        return float(per_draw.mean()), float(mcse), per_draw

    a_mean, a_mcse, per_draw = rate("design")
    n_mean, n_mcse, _ = rate("null")
    m_mean, m_mcse = rate("mcid")[:2] if "mcid" in effects else (None, None)
    failed = int(sum(results[("design", j)][1].sum() for j in range(n_draws)))
    table = [
        {**{k: float(theta[k][j]) for k in theta}, "success_rate": float(per_draw[j])}
        for j in range(n_draws)
    ]
    check = None
    if check_mcmc:
        check = _mcmc_check(
            [results[("design", j)][2] for j in range(n_draws)],
            check_mcmc,
            settings,
            prior,
            group_prior,
            decision,
            seed,
            mcmc_draws,
        )
    return AssuranceResult(
        decision=decision.text,
        assurance=a_mean,
        assurance_mcse=a_mcse,
        p_success_null=n_mean,
        p_success_null_mcse=n_mcse,
        p_success_mcid=m_mean,
        p_success_mcid_mcse=m_mcse,
        n_draws=n_draws,
        reps_per_draw=reps_per_draw,
        failed=failed,
        draws=table,
        mcmc_check=check,
    )


def _mcmc_check(arrays, k, settings, prior, group_prior, decision, seed, draws) -> dict:
    """NUTS on the first ``k`` simulated trials (one per parameter draw, then the next ones)."""
    from trialsim.bayes.models import model_input
    from trialsim.bayes.sampling import sample_model
    from trialsim.bayes.summary import posterior_probabilities
    from trialsim.report.progress import track

    picks = [(j, r) for r in range(len(arrays[0][0].y)) for j in range(len(arrays))][:k]
    rows = []
    for j, r in track(picks, f"MCMC check ({len(picks)} trials)"):
        a, q = arrays[j]
        run = sample_model(
            model_input(a, r, settings.model),
            prior=prior,
            group_prior=group_prior,
            draws=draws,
            tune=draws,
            chains=2,
            seed=seed + 7919 * j + r,
        )
        effect = run.idata.posterior["effect"].values
        mc = posterior_probabilities(
            effect, mcid=settings.mcid, rope=settings.rope, better=settings.better
        )
        mc["posterior_mean"] = float(effect.mean())
        fast = {name: float(q[name][r]) for name in mc}
        rows.append(
            {
                "draw": j,
                "rep": r,
                "mcmc": mc,
                "fast": fast,
                "agree": bool(
                    decision({n: np.array([mc[n]]) for n in mc})[0]
                    == decision({n: np.array([fast[n]]) for n in fast})[0]
                ),
            }
        )
    diffs = {n: max(abs(x["mcmc"][n] - x["fast"][n]) for x in rows) for n in rows[0]["mcmc"]}
    return {
        "trials": len(rows),
        "max_abs_difference": diffs,
        "decision_agreement": float(np.mean([x["agree"] for x in rows])),
        "mcmc_draws": draws,
        "rows": rows,
    }
