"""Simulated operating characteristics of analyses on a scenario (``trialsim power``).

Each replicate trial is simulated twice on common random numbers: with the scenario's effect
(power, bias, coverage) and with zero effect (type-I error). Bias and coverage are scored
against the estimand computed from the simulated trials' potential outcomes
(:mod:`trialsim.power.estimand`); :func:`true_effect` is its closed form where one exists.
Summaries carry Monte Carlo standard errors as in Morris, White & Crowther (2019), Stat Med
38:2074, table 6.
Replicates are streamed in chunks: each chunk is simulated and analysed in one thread, and
chunks run on all cores at once (numpy releases the GIL), so memory does not grow with
``reps`` and the result does not depend on the number of threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from trialsim.analyse.registry import ANALYSES, get_analysis, resolve_analysis
from trialsim.errors import UserError
from trialsim.parallel import map_in_threads
from trialsim.power.estimand import (
    ESTIMANDS,
    TrialMeans,
    analysis_scale,
    population_estimand,
    sample_estimands,
    trial_means,
)
from trialsim.scenario import (
    GAUSSIAN_OUTCOMES,
    BinaryOutcome,
    BoundedOutcome,
    ContinuousOutcome,
    CountOutcome,
    Scenario,
)
from trialsim.seeds import BLOCK_SIZE
from trialsim.simulate import simulate_trials
from trialsim.simulate.attendance import dose_factor, draw_sessions
from trialsim.simulate.outcomes import effect_shares


@dataclass(frozen=True)
class OperatingCharacteristics:
    """Summary of one analysis over simulated replicates, each figure with its MCSE."""

    analysis: str
    outcome: str
    reps: int
    truth: float
    power: float
    power_mcse: float
    type1: float
    type1_mcse: float
    bias: float
    bias_mcse: float
    empirical_se: float
    empirical_se_mcse: float
    mean_se: float
    rmse: float
    coverage: float
    coverage_mcse: float
    failures: int
    null_failures: int
    # the population estimand (``truth``) from the simulated potential outcomes: its Monte
    # Carlo SE, its closed form where one exists (NaN otherwise), the analysis's scale and,
    # for ratio scales, the ratio label ("RR", "OR"); the mean estimate of the fits
    truth_mcse: float = float("nan")
    truth_analytic: float = float("nan")
    scale: str = "mean difference"
    ratio: str | None = None
    mean_estimate: float = float("nan")

    def as_dict(self) -> dict:
        """Plain dict for JSON; ``name`` is the analysis (the documented key)."""
        return {"name": self.analysis, **asdict(self)}


def null_scenario(s: Scenario) -> Scenario:
    """The same scenario with no treatment effect on any outcome (biases are kept)."""
    zero = {
        BoundedOutcome: {"effect": 0.0},
        ContinuousOutcome: {"effect": 0.0},
        CountOutcome: {"rate_ratio": 1.0},
        BinaryOutcome: {"odds_ratio": 1.0},
    }
    outcomes = {k: o.model_copy(update=zero[type(o)]) for k, o in s.outcomes.items()}
    return s.model_copy(update={"outcomes": outcomes})


def dose_factor_sample(s: Scenario, *, n: int = 400_000) -> np.ndarray:
    """Dose factors of ``n`` simulated treated participants (fixed seed, for estimands)."""
    return _prognosis_and_dose(s, n)[1]


def _prognosis_and_dose(s: Scenario, n: int = 400_000) -> tuple[np.ndarray, np.ndarray]:
    """Standardised prognoses (the simulator's: the primary outcome's final-visit person
    latent, favourable direction) of ``n`` treated participants and their dose factors
    (read-only arrays, drawn once per attendance model, sessions and ``n``: the analytic
    formulas and the estimands ask for the same sample many times)."""
    key = (s.attendance.model_dump_json(), s.design.sessions_offered, n)
    if key not in _DOSE_SAMPLES:
        rng = np.random.default_rng(12345)
        sessions = s.design.sessions_offered
        prognosis = rng.standard_normal(n)
        attended = draw_sessions(prognosis, s.attendance, sessions, rng=rng)
        dose = dose_factor(attended / sessions, s.attendance)
        for a in (prognosis, dose):
            a.flags.writeable = False
        if len(_DOSE_SAMPLES) >= 8:  # a few scenarios' worth (6.4 MB each)
            _DOSE_SAMPLES.pop(next(iter(_DOSE_SAMPLES)))
        _DOSE_SAMPLES[key] = (prognosis, dose)
    return _DOSE_SAMPLES[key]


_DOSE_SAMPLES: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def mean_dose_factor(s: Scenario, *, n: int = 400_000) -> float:
    """E[dose factor] of a treated participant (fixed-seed Monte Carlo, SE < 1e-3)."""
    return float(dose_factor_sample(s, n=n).mean())


def true_effect(
    s: Scenario, outcome: str, estimand: str | None, *, mean_scale: bool = False
) -> float:
    """The target of an analysis at the final visit (NaN if not simple).

    Continuous outcomes (outcome units): itt = effect x (mean dose factor - contamination of
    controls); full_dose = the effect. Counts: the marginal log rate ratio, itt = ``log
    E[rr^(share d)] - log rr^(share c)`` over treated dose factors d (c the controls'
    contamination, share the visit's effect share); full_dose = ``share log rr``. Binary:
    the marginal log odds ratio, itt = ``logit E[p(d)] - logit p(c)`` with ``logit p(d) =
    logit(prevalence) + share d log OR``; full_dose = ``share log OR``. The count and binary
    itt formulas need the dose to be independent of the outcome: with self-selected
    attendance (``prognosis_log_odds != 0``) and a dose-response they return NaN (bias and
    coverage are then not scored). Rounding and clipping
    of bounded scales are ignored (negligible away from the bounds).

    ``mean_scale=True`` is the target of a Gaussian analysis (``Analysis.gaussian``: mixed,
    ANCOVA, ...) of a count or binary outcome, which models the outcome on its own scale:
    the difference in means (counts, outcome units) or in risks (binary) between the arms,
    ``E[Y | treated] - E[Y | control]``. It is computed analytically from the simulator's
    outcome model (:mod:`trialsim.simulate.outcomes`), with the expectation over the
    treated's attendance taken on the fixed-seed sample of :func:`dose_factor_sample`, so it
    is also defined under self-selected attendance: the attendance prognosis p (standard
    normal) shifts the outcome's latent score by ``a p`` with ``a = sqrt(1 - icc_m) r``,
    r the correlation of the outcome's and the primary outcome's final-visit person scores.
    Counts: ``E[Y | p] = mean rr^(share d(p)) exp(sd_log a p - sd_log^2 a^2 / 2)``; binary:
    ``P(Y = 1 | p) = 1 - Phi((sqrt(v) Phi^-1(1 - p(d)) - a p) / sqrt(v - a^2))`` with v the
    treated's latent variance (group and trainer effects included). Controls: ``mean
    rr^(share c)`` and ``p(c)``. Exact for the simulator up to the Monte Carlo error of the
    dose sample (relative SE < 1e-3); no per-replicate work.
    """
    o = s.outcomes[outcome]
    if estimand not in ("itt", "full_dose"):  # compliers, None: no closed form here
        return float("nan")
    share = effect_shares(o, s.n_visits)[-1]
    # controls share a municipality (and its trained staff) with the treated arm unless the
    # municipality itself was randomised (as the simulator applies contamination)
    control_dose = 0.0 if s.structure.cluster_is_site else s.design.contamination
    # with three or more arms: the first contrast (the simulated analyses' default contrast)
    first = s.arm_effects(outcome)[0]
    if isinstance(o, GAUSSIAN_OUTCOMES):
        full = first * share
        if estimand == "full_dose":
            return float(full)
        return float(full * (mean_dose_factor(s) - control_dose))
    if mean_scale:
        return _mean_difference(s, outcome, estimand, share, control_dose)
    log_effect = np.log(first)
    if estimand == "full_dose":
        return float(share * log_effect)
    if s.attendance.prognosis_log_odds != 0 and s.attendance.dose_response != "none":
        # self-selected dose correlates with the outcome's latent score: the multiplicative
        # effect no longer averages separately from it, and the estimand has no closed form
        return float("nan")
    dose = share * dose_factor_sample(s)
    if isinstance(o, CountOutcome):
        treated = np.log(np.mean(np.exp(log_effect * dose)))
        return float(treated - log_effect * share * control_dose)
    from scipy import special

    base = special.logit(o.prevalence)
    treated = special.logit(np.mean(special.expit(base + log_effect * dose)))
    return float(treated - (base + log_effect * share * control_dose))


def _mean_difference(s: Scenario, outcome: str, estimand: str, share: float, c: float) -> float:
    """E[Y | treated] - E[Y | control] of a count or binary outcome (see :func:`true_effect`);
    ``full_dose``: every treated participant at dose factor 1 and no contamination."""
    control, treated = _arm_means(s, outcome, estimand, share, c)
    return float(treated - control)


def arm_means(s: Scenario, outcome: str) -> tuple[float, float]:
    """(control, treated) mean of a count or binary outcome at the final visit under the
    intention-to-treat estimand -- the risks or mean counts of :func:`true_effect`'s
    ``mean_scale`` (attendance, self-selection and contamination included; the first
    contrast with three or more arms)."""
    o = s.outcomes[outcome]
    share = effect_shares(o, s.n_visits)[-1]
    control_dose = 0.0 if s.structure.cluster_is_site else s.design.contamination
    return _arm_means(s, outcome, "itt", share, control_dose)


def _arm_means(s: Scenario, outcome: str, estimand: str, share: float, c: float):
    from scipy import special

    from trialsim.scenario import outcome_correlation
    from trialsim.simulate.outcomes import cluster_scales

    o = s.outcomes[outcome]
    names = list(s.outcomes)
    if estimand == "full_dose":  # everyone treated at full dose: no selection either
        prognosis, dose, c, a = np.zeros(1), np.ones(1), 0.0, 0.0
    else:
        prognosis, dose = _prognosis_and_dose(s)
        r = outcome_correlation(len(names), s.correlation.between_outcomes)[
            names.index(outcome), names.index(s.primary)
        ]
        sign = 1.0 if s.outcomes[s.primary].better == "higher" else -1.0
        # latent shift per SD of attendance prognosis
        a = float(np.sqrt(1.0 - s.groups.icc_municipality) * r * sign)
    # the control arm's mean is known exactly (mean rr^(share c), p(c)); it is computed on
    # the same prognosis sample as the treated arm's so that the sample's Monte Carlo error
    # cancels in the difference (a control variate: exact when the dose is constant)
    if isinstance(o, CountOutcome):
        rr = s.arm_effects(outcome)[0]  # the first contrast with 3+ arms
        shift = np.exp(o.sd_log * a * prognosis)
        shift /= shift.mean()  # E[shift] = 1 exactly: a ratio estimator, exact at a fixed dose
        control = o.mean * rr ** (share * c)
        return float(control), float(
            control + o.mean * np.mean((rr ** (share * dose) - rr ** (share * c)) * shift)
        )
    s_group, s_trainer = cluster_scales(s.groups)
    v = 1.0 + s_group**2 + s_trainer**2  # the treated are in delivery groups
    base, log_or = special.logit(o.prevalence), np.log(s.arm_effects(outcome)[0])

    def risk(d):  # P(Y = 1 | prognosis) of a treated participant at dose factor d
        cut = np.sqrt(v) * special.ndtri(1.0 - special.expit(base + log_or * share * d))
        with np.errstate(divide="ignore"):  # v = a^2: the outcome is the prognosis itself
            return special.ndtr(-(cut - a * prognosis) / np.sqrt(max(v - a**2, 0.0)))

    control = special.expit(base + log_or * share * c)
    return float(control), float(control + np.mean(risk(dose) - risk(c)))


def estimand_note(s: Scenario, outcome: str, analysis: str) -> str | None:
    """A line saying on which scale ``analysis`` is scored when it is a Gaussian analysis of
    a count or binary outcome (asked for by name: the default never does it), else None."""
    spec = s.structure.outcome(outcome)
    a = get_analysis(analysis)
    if spec.gaussian or not a.gaussian or a.estimand is None:
        return None
    scale = "count scale (outcome units)" if spec.type == "count" else "risk scale"
    return (
        f"{analysis} models the {spec.type} outcome {outcome} on its own scale: its estimand "
        f"is the ITT difference in means on the {scale}, and bias and coverage are scored "
        "against it"
    )


@dataclass
class _Collected:
    estimate: list
    se: list
    p: list
    low: list
    high: list
    failed: list
    means: list  # TrialMeans per chunk (None: the analysis has no estimand)

    @classmethod
    def empty(cls):
        return cls([], [], [], [], [], [], [])

    def add(self, e, means: TrialMeans | None = None) -> None:
        self.estimate.append(e.estimate)
        self.se.append(e.se)
        self.p.append(e.p_value)
        self.low.append(e.ci_low)
        self.high.append(e.ci_high)
        self.failed.append(e.failed)
        self.means.append(means)

    def arrays(self):
        return {k: np.concatenate(v) for k, v in vars(self).items() if k != "means"}

    def trial_means(self) -> TrialMeans | None:
        """Every replicate's mean potential outcomes, or None without an estimand."""
        return None if any(m is None for m in self.means) else TrialMeans.concat(self.means)


@dataclass(frozen=True)
class Truth:
    """What an analysis is scored against: the population estimand ``value`` (with its Monte
    Carlo SE) from the simulated potential outcomes, its closed form ``analytic`` (NaN where
    none), the analysis's scale, and each replicate's sample estimand in the world with the
    effect (``per_trial``) and without (``per_trial_null``, 0), None without an estimand."""

    value: float
    mcse: float
    analytic: float
    scale: str
    ratio: str | None
    per_trial: np.ndarray | None
    per_trial_null: np.ndarray | None


def score_truth(s: Scenario, outcome: str, analysis, effect: _Collected, null: _Collected) -> Truth:
    """The :class:`Truth` of ``analysis`` (an :class:`~trialsim.analyse.registry.Analysis`)
    on ``outcome`` of scenario ``s`` (the world with the effect), from the collected runs."""
    return truth_from_means(
        s,
        outcome,
        analysis,
        effect.trial_means(),
        null.trial_means(),
        len(effect.arrays()["estimate"]),
        len(null.arrays()["estimate"]),
    )


def truth_from_means(s, outcome, analysis, means, means0, reps, reps0) -> Truth:
    """The :class:`Truth` from the replicates' mean potential outcomes in the world with the
    effect (``means``, ``reps`` trials) and without (``means0``, ``reps0``); None means: no
    estimand, or no effect in that world (every estimand 0). ``s`` gives the closed form."""
    scale = analysis_scale(s, outcome, analysis.gaussian)
    if means is None and analysis.estimand in ESTIMANDS:  # a scenario without effect
        analytic = true_effect(s, outcome, analysis.estimand, mean_scale=analysis.gaussian)
        return Truth(0.0, 0.0, analytic, scale.name, scale.ratio, np.zeros(reps), np.zeros(reps0))
    if means is None:
        return closed_form_truth(s, outcome, analysis)
    value, mcse = population_estimand(means, scale)
    analytic = true_effect(s, outcome, analysis.estimand, mean_scale=analysis.gaussian)
    # without the effect both potential outcomes coincide: the estimand is exactly 0
    # (tested), so the null world's trials are not scored again
    per_trial_null = np.zeros(reps0) if means0 is None else sample_estimands(means0, scale)
    per_trial = sample_estimands(means, scale)
    return Truth(value, mcse, analytic, scale.name, scale.ratio, per_trial, per_trial_null)


def closed_form_truth(s: Scenario, outcome: str, analysis) -> Truth:
    """The :class:`Truth` of ``analysis`` from the closed form :func:`true_effect` alone (no
    per-trial estimands; its Monte Carlo SE is NaN)."""
    scale = analysis_scale(s, outcome, analysis.gaussian)
    value = true_effect(s, outcome, analysis.estimand, mean_scale=analysis.gaussian)
    return Truth(value, float("nan"), value, scale.name, scale.ratio, None, None)


def _means(world: Scenario, data, outcome: str, analysis) -> TrialMeans | None:
    """The trials' mean potential outcomes for the estimand of ``analysis`` (an
    :class:`~trialsim.analyse.registry.Analysis`); None when it has none or when ``world``
    has no effect on ``outcome`` (every estimand is then 0)."""
    estimand = analysis.estimand
    no_effect = all(
        e == _NO_EFFECT[world.outcomes[outcome].type] for e in world.arm_effects(outcome)
    )
    if estimand not in ESTIMANDS or no_effect:
        return None
    return trial_means(world, data, outcome, estimand)


_NO_EFFECT = {"bounded": 0.0, "continuous": 0.0, "count": 1.0, "binary": 1.0}


def simulate_and_analyse(
    worlds: Sequence[Scenario],
    jobs: Sequence[tuple[str, str]],
    *,
    reps: int,
    seed: int,
    chunk_size: int,
    threads: int | None,
    progress: Callable[[int], None] | None,
    df: str = "satterthwaite",
) -> list[list[_Collected]]:
    """Simulate each world and run each (outcome, analysis) job, chunk by chunk on common
    random numbers, the mixed models with small-sample method ``df``; returns
    ``collected[world][job]`` in replicate order."""
    chunks = [range(a, min(a + chunk_size, reps)) for a in range(0, reps, chunk_size)]
    resolved = [resolve_analysis(a).with_df(df) for _, a in jobs]  # names or Analysis

    def run(chunk: range) -> list[list]:
        out = []
        for world in worlds:
            data = simulate_trials(world, chunk, seed=seed, threads=1, potential_outcomes=True)
            out.append(
                [
                    (a.estimate(data, outcome), _means(world, data, outcome, a))
                    for (outcome, _), a in zip(jobs, resolved, strict=True)
                ]
            )
        return out

    collected = [[_Collected.empty() for _ in jobs] for _ in worlds]
    for chunk, results in zip(chunks, map_in_threads(run, chunks, threads), strict=True):
        for runs, estimates in zip(collected, results, strict=True):
            for run_, (estimate, means) in zip(runs, estimates, strict=True):
                run_.add(estimate, means)
        if progress is not None:
            progress(len(chunk))
    return collected


def simulate_operating_characteristics(
    scenario: Scenario,
    analyses: Sequence[str],
    *,
    reps: int,
    seed: int,
    outcome: str | None = None,
    alpha: float = 0.05,
    chunk_size: int = BLOCK_SIZE,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    replicates: list | None = None,
    df: str = "satterthwaite",
) -> tuple[list[OperatingCharacteristics], dict[str, np.ndarray]]:
    """Power, type-I error, bias, empirical SE, RMSE and coverage of each analysis.

    Bias and coverage are scored against the population estimand computed from the
    simulated trials' potential outcomes (:mod:`trialsim.power.estimand`), so they are
    defined for every outcome type and attendance model; ``truth_analytic`` is its closed
    form where one exists (:func:`true_effect`).

    Returns the summaries and, per analysis, the replicate p-values under the effect (for a
    running-power plot). ``replicates``: a list that receives one table (pandas DataFrame)
    per analysis of every replicate's estimate, SE, p-value, interval and failure, in the
    world with the effect (``world="effect"``) and without (``"null"``), with the trial's
    own (sample) estimand and the population truth: new diagnosands can be computed from it
    without simulating again. ``df``: the mixed models' small-sample method,
    ``"satterthwaite"`` or ``"kenward-roger"``.

    Example
    -------
    >>> oc, _ = simulate_operating_characteristics(s, ["mixed", "ancova"], reps=1000, seed=1)
    ...                                                                  # doctest: +SKIP
    """
    outcome = outcome or scenario.primary
    analyses = [resolve_analysis(a).with_df(df) for a in analyses]  # names, or Analysis (--formula)
    one = scenario.with_outcomes([outcome])
    effect_runs, null_runs = simulate_and_analyse(
        (one, null_scenario(one)),
        [(outcome, a) for a in analyses],
        reps=reps,
        seed=seed,
        chunk_size=chunk_size,
        threads=threads,
        progress=progress,
        df=df,
    )
    results, p_values = [], {}
    for analysis, effect_run, null_run in zip(analyses, effect_runs, null_runs, strict=True):
        name = analysis.name
        truth = score_truth(one, outcome, analysis, effect_run, null_run)
        eff, nul = effect_run.arrays(), null_run.arrays()
        results.append(_summarise(name, outcome, truth, eff, nul, alpha))
        p_values[name] = eff["p"]
        if replicates is not None:
            replicates.append(replicate_table(name, outcome, truth, eff, nul))
    return results, p_values


def replicate_table(name, outcome, truth: Truth, eff, nul):
    """Every replicate of one analysis in both worlds, one row each (long format):
    ``estimand`` is the replicate's own (sample) estimand, ``truth`` the population one that
    bias and coverage are scored against (both 0 without the effect, NaN without an
    estimand); ``scale`` names the scale of both and of the estimate."""
    import pandas as pd

    frames = []
    for world, arrays, target, own in (
        ("effect", eff, truth.value, truth.per_trial),
        ("null", nul, 0.0 if np.isfinite(truth.value) else np.nan, truth.per_trial_null),
    ):
        n = len(arrays["estimate"])
        frames.append(
            pd.DataFrame(
                {
                    "analysis": name,
                    "outcome": outcome,
                    "world": world,
                    "rep": np.arange(n),
                    "scale": truth.scale,
                    "estimand": np.full(n, np.nan) if own is None else own,
                    "truth": target,
                    "estimate": arrays["estimate"],
                    "se": arrays["se"],
                    "p_value": arrays["p"],
                    "ci_low": arrays["low"],
                    "ci_high": arrays["high"],
                    "failed": arrays["failed"].astype(bool),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _summarise(name, outcome, target: Truth, eff, nul, alpha) -> OperatingCharacteristics:
    """Diagnosands over all replicates. Failed fits are counted, never dropped: they do not
    reject (power, type-I error) and do not cover (coverage), so a failing analysis cannot
    look better than it is; bias and SEs are over the successful fits. The bias's Monte
    Carlo SE is that of the mean of ``estimate - estimand`` over the replicates (each with
    its own sample estimand), which counts the truth's Monte Carlo error too."""
    truth = target.value
    ok, ok0 = ~eff["failed"], ~nul["failed"]
    reps, reps0 = len(ok), len(ok0)
    n = int(ok.sum())
    est = eff["estimate"][ok]
    power = float(np.mean(ok & (eff["p"] < alpha))) if reps else np.nan
    type1 = float(np.mean(ok0 & (nul["p"] < alpha))) if reps0 else np.nan
    emp_se = float(np.std(est, ddof=1)) if n > 1 else np.nan
    covered = ok & (eff["low"] <= truth) & (truth <= eff["high"])
    coverage = float(np.mean(covered)) if reps and np.isfinite(truth) else np.nan
    bias = float(np.mean(est) - truth) if n else np.nan
    bias_mcse = emp_se / np.sqrt(n) if n else np.nan
    if target.per_trial is not None and n > 1:
        paired = est - target.per_trial[ok]
        if np.isfinite(paired).all():
            bias_mcse = float(np.std(paired, ddof=1) / np.sqrt(n))
    return OperatingCharacteristics(
        analysis=name,
        outcome=outcome,
        reps=reps,
        truth=truth,
        power=power,
        power_mcse=_binomial_mcse(power, reps),
        type1=type1,
        type1_mcse=_binomial_mcse(type1, reps0),
        bias=bias,
        bias_mcse=bias_mcse,
        empirical_se=emp_se,
        empirical_se_mcse=emp_se / np.sqrt(2 * (n - 1)) if n > 1 else np.nan,
        mean_se=float(np.mean(eff["se"][ok])) if n else np.nan,
        rmse=float(np.sqrt(np.mean((est - truth) ** 2))) if n else np.nan,
        coverage=coverage,
        coverage_mcse=_binomial_mcse(coverage, reps),
        failures=int((~ok).sum()),
        null_failures=int((~ok0).sum()),
        truth_mcse=target.mcse,
        truth_analytic=target.analytic,
        scale=target.scale,
        ratio=target.ratio,
        mean_estimate=float(np.mean(est)) if n else np.nan,
    )


def _binomial_mcse(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / n)) if n and np.isfinite(p) else float("nan")


def holm_decisions(p_values: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Per-replicate decisions over K outcomes from p-values (R, K).

    ``any``: at least one outcome significant after Holm's step-down adjustment (controls
    the family-wise error); ``all``: every outcome significant at ``alpha`` (co-primary
    outcomes, an intersection-union test that needs no adjustment); ``holm``: (R, K) the Holm
    rejections. Reference: Holm (1979), Scand J Stat 6:65.
    """
    p = np.asarray(p_values, dtype=float)
    r, k = p.shape
    order = np.argsort(p, axis=1)
    sorted_p = np.take_along_axis(p, order, axis=1)
    thresholds = alpha / (k - np.arange(k))
    # step down: reject the j-th smallest only if all smaller ones were rejected
    passed = np.cumprod(sorted_p <= thresholds, axis=1).astype(bool)
    holm = np.zeros_like(passed)
    np.put_along_axis(holm, order, passed, axis=1)
    return {"holm": holm, "any": holm.any(axis=1), "all": (p < alpha).all(axis=1)}


@dataclass(frozen=True)
class DecisionPower:
    """How often a decision over several outcomes succeeds, with Monte Carlo SEs.

    ``rule`` is ``"all"`` (co-primary: every outcome significant at alpha, an
    intersection-union test) or ``"any"`` (at least one outcome significant after Holm's
    step-down adjustment). ``power`` is under the scenario's effects, ``type1`` under no
    effect on any outcome (for ``"any"`` the family-wise error rate). A failed fit never
    rejects; ``failures`` counts replicates with at least one failed fit (effect world).
    """

    rule: str
    outcomes: tuple[str, ...]
    reps: int
    power: float
    power_mcse: float
    type1: float
    type1_mcse: float
    failures: int

    def as_dict(self) -> dict:
        return {**asdict(self), "outcomes": list(self.outcomes)}


def simulate_multiple_outcomes(
    scenario: Scenario,
    analysis: str | Mapping[str, str],
    outcomes: Sequence[str],
    *,
    reps: int,
    seed: int,
    alpha: float = 0.05,
    chunk_size: int = BLOCK_SIZE,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    df: str = "satterthwaite",
) -> tuple[list[OperatingCharacteristics], dict[str, DecisionPower]]:
    """Per-outcome operating characteristics and the power of 'all' / 'any' decisions.

    The outcomes are simulated together (correlated as the scenario says), each analysed by
    ``analysis`` (one name, or a mapping outcome -> name), on common random numbers with and
    without effects, as :func:`simulate_operating_characteristics`.

    Returns ``(per_outcome, decisions)``: one :class:`OperatingCharacteristics` per outcome
    and ``{"all": DecisionPower, "any": DecisionPower}`` (see :func:`holm_decisions`).

    Example
    -------
    >>> per, dec = simulate_multiple_outcomes(s, "mixed", ["psp", "mhrm"], reps=1000, seed=1)
    ...                                                                  # doctest: +SKIP
    >>> dec["all"].power, dec["all"].power_mcse                          # doctest: +SKIP
    """
    outcomes = list(outcomes)
    if len(set(outcomes)) != len(outcomes) or not outcomes:
        raise UserError(f"outcomes must be distinct and non-empty, got {outcomes}")
    names = {k: analysis if isinstance(analysis, str) else analysis[k] for k in outcomes}
    for name in names.values():
        get_analysis(name).with_df(df)
    one = scenario.with_outcomes(outcomes)
    effect_runs, null_runs = simulate_and_analyse(
        (one, null_scenario(one)),
        [(k, names[k]) for k in outcomes],
        reps=reps,
        seed=seed,
        chunk_size=chunk_size,
        threads=threads,
        progress=progress,
        df=df,
    )
    per_outcome, p_effect, p_null, failed = [], [], [], []
    for k, effect_run, null_run in zip(outcomes, effect_runs, null_runs, strict=True):
        eff, nul = effect_run.arrays(), null_run.arrays()
        truth = score_truth(one, k, ANALYSES[names[k]], effect_run, null_run)
        per_outcome.append(_summarise(names[k], k, truth, eff, nul, alpha))
        # a failed fit never rejects (it is counted, not dropped)
        p_effect.append(np.where(eff["failed"], 1.0, eff["p"]))
        p_null.append(np.where(nul["failed"], 1.0, nul["p"]))
        failed.append(eff["failed"])
    on = holm_decisions(np.column_stack(p_effect), alpha)
    off = holm_decisions(np.column_stack(p_null), alpha)
    any_failed = int(np.any(failed, axis=0).sum())
    decisions = {}
    for rule in ("all", "any"):
        power, type1 = float(on[rule].mean()), float(off[rule].mean())
        decisions[rule] = DecisionPower(
            rule=rule,
            outcomes=tuple(outcomes),
            reps=reps,
            power=power,
            power_mcse=_binomial_mcse(power, reps),
            type1=type1,
            type1_mcse=_binomial_mcse(type1, reps),
            failures=any_failed,
        )
    return per_outcome, decisions
