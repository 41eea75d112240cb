"""Simulated power of a trial with three or more arms: every arm against the reference.

Each replicate trial is analysed once as a whole: the analysis's joint model (all arms in one
fit, :attr:`Analysis.joint_fit`) gives every contrast's estimate and SE and, from the same
fit, the contrasts' correlation. A mixed model's Satterthwaite df belongs to one coefficient,
so the joint model is fitted once per contrast (same model, each arm's coefficient in turn,
batched over replicates); an OLS fit gives them all at once. Analyses that compare two arms
at a time (GLMs, cluster-level) run once per contrast on the two arms' participants.

Reported, each with its Monte Carlo SE (Morris, White & Crowther 2019, Stat Med 38:2074):

* per contrast: power, type-I error (the same trials without any effect), bias, empirical SE,
  coverage against that contrast's own truth (the two-arm sub-trial's estimand);
* per adjustment (``none``, ``holm``, and ``dunnett`` when the analysis is one joint Gaussian
  model): the power of the decisions "any arm significant" and "all arms significant", and
  the family-wise error rate (FWER: any rejection in the world without effects);
* the probability that the arm with the best estimate is the truly best arm.

Holm's and Dunnett's adjustments are :mod:`trialsim.analyse.multiplicity`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.multiplicity import correlation, dunnett_rejections, holm
from trialsim.analyse.registry import Analysis
from trialsim.data import TrialData
from trialsim.parallel import map_in_threads
from trialsim.power.estimand import TrialMeans
from trialsim.power.simulation import (
    OperatingCharacteristics,
    Truth,
    _binomial_mcse,
    _means,
    _summarise,
    null_scenario,
    truth_from_means,
)
from trialsim.scenario import Scenario
from trialsim.seeds import BLOCK_SIZE
from trialsim.simulate import simulate_trials

_FIELDS = ("estimate", "se", "df", "p", "low", "high", "failed")


@dataclass(frozen=True)
class ContrastArrays:
    """Every contrast of a batch: arrays (R, K) in arm order; ``corr`` (R, K, K) the
    contrasts' correlation from the joint fit (None: not one joint Gaussian model)."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    p: np.ndarray
    low: np.ndarray
    high: np.ndarray
    failed: np.ndarray
    corr: np.ndarray | None
    engine: str | None = None  # the joint fit's engine ("ols", "reml", ...); None: none

    @staticmethod
    def from_estimates(per_contrast: list[Estimates], corr, engine=None) -> ContrastArrays:
        def stack(attr):
            return np.column_stack([getattr(e, attr) for e in per_contrast])

        return ContrastArrays(
            stack("estimate"),
            stack("se"),
            stack("df"),
            stack("p_value"),
            stack("ci_low"),
            stack("ci_high"),
            stack("failed").astype(bool),
            corr,
            engine,
        )

    @staticmethod
    def concat(parts: list[ContrastArrays]) -> ContrastArrays:
        corr = None if parts[0].corr is None else np.concatenate([p.corr for p in parts])
        return ContrastArrays(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
            corr,
            parts[0].engine,
        )

    def column(self, j: int) -> dict[str, np.ndarray]:
        """Contrast ``j`` as the arrays :func:`trialsim.power.simulation._summarise` takes."""
        return {f: getattr(self, f)[:, j] for f in _FIELDS}


def estimate_every_contrast(analysis: Analysis, data: TrialData, outcome: str) -> ContrastArrays:
    """Every non-reference arm against the reference, batched over the replicates of
    ``data``; see the module docstring for how many fits that takes."""
    arms = data.structure.contrasts
    if analysis.joint_fit is None:
        return ContrastArrays.from_estimates(
            [analysis.estimate(data.for_contrast(a), outcome) for a in arms], None
        )
    fit, columns = analysis.joint_fit(data.for_contrast(arms[0]), outcome)
    corr = None
    if analysis.gaussian and all(c >= 0 for c in columns):
        corr = correlation(fit.cov_beta[:, columns][:, :, columns])
    if fit.engine == "ols" and all(c >= 0 for c in columns):
        e = fit.estimates
        ok = ~e.failed
        rows = [
            Estimates.from_t(
                e.analysis,
                np.where(ok, fit.beta[:, c], np.nan),
                np.where(ok, np.sqrt(fit.cov_beta[:, c, c]), np.nan),
                e.df,
                level=e.level,
                failed=e.failed,
            )
            for c in columns
        ]
        return ContrastArrays.from_estimates(rows, corr, fit.engine)
    rows = [fit.estimates]
    rows += [analysis.joint_fit(data.for_contrast(a), outcome)[0].estimates for a in arms[1:]]
    return ContrastArrays.from_estimates(rows, corr, fit.engine)


@dataclass(frozen=True)
class ContrastCharacteristics:
    """The operating characteristics of one contrast (``ARM - REFERENCE``)."""

    contrast: str
    arm: str
    oc: OperatingCharacteristics
    target: Truth  # what the contrast is scored against (replicate tables)

    def as_dict(self) -> dict:
        return {**self.oc.as_dict(), "contrast": self.contrast, "arm": self.arm}


@dataclass(frozen=True)
class ArmDecision:
    """Decisions over the contrasts after one multiplicity adjustment, with Monte Carlo SEs.

    ``any_power``: at least one arm significant; ``all_power``: every arm significant (in the
    world with the scenario's effects); ``fwer``: at least one arm significant in the world
    without effects (the family-wise error rate); ``contrast_power``: each contrast's power
    after the adjustment. A failed fit never rejects.
    """

    adjustment: str
    reps: int
    any_power: float
    any_power_mcse: float
    all_power: float
    all_power_mcse: float
    fwer: float
    fwer_mcse: float
    contrast_power: tuple[float, ...]

    def as_dict(self) -> dict:
        return {**asdict(self), "contrast_power": list(self.contrast_power)}


@dataclass(frozen=True)
class MultiArmPower:
    """:func:`simulate_multi_arm`'s result."""

    analysis: str
    outcome: str
    reference: str
    contrasts: tuple[ContrastCharacteristics, ...]
    decisions: tuple[ArmDecision, ...]
    best_arm: str | None  # the truly best arm (None: a tie, selection not scored)
    best_arm_selected: float
    best_arm_selected_mcse: float
    dunnett_note: str

    def as_dict(self) -> dict:
        return {
            "analysis": self.analysis,
            "outcome": self.outcome,
            "reference": self.reference,
            "contrasts": [c.as_dict() for c in self.contrasts],
            "decisions": {d.adjustment: d.as_dict() for d in self.decisions},
            "best_arm": self.best_arm,
            "best_arm_selected": self.best_arm_selected,
            "best_arm_selected_mcse": self.best_arm_selected_mcse,
            "dunnett_note": self.dunnett_note,
        }


def two_arm_subtrial(s: Scenario, arm: str) -> Scenario:
    """The trial of the reference arm and ``arm`` alone: the same participants in those two
    arms (each municipality's count scaled by their shares, rounded), their allocation ratio,
    and ``arm``'s effects. Its estimand is the contrast's truth; simulating it checks the
    multi-arm power of that contrast."""
    arms = s.arm_labels
    j = arms.index(arm)
    shares = s.arm_allocation
    kept = shares[0] + shares[j]
    participants = tuple(max(2, round(n * kept)) for n in s.sites.participants)
    outcomes = {}
    for name, o in s.outcomes.items():
        key = {"count": "rate_ratio", "binary": "odds_ratio"}.get(o.type, "effect")
        outcomes[name] = o.model_copy(update={key: s.arm_effects(name)[j - 1]})
    design = s.design.model_copy(
        update={
            "arms": (arms[0], arm),
            "allocation": None,
            "allocation_treated": shares[j] / kept,
        }
    )
    return s.model_copy(
        update={
            "design": design,
            "outcomes": outcomes,
            "sites": s.sites.model_copy(update={"participants": participants}),
        }
    )


def _decisions(name, p, t_abs, corr, df, alpha) -> np.ndarray:
    """(R, K) rejections after adjustment ``name`` (failed fits: p = 1, |t| = NaN)."""
    if name == "none":
        return p < alpha
    if name == "holm":
        return holm(p) < alpha
    return dunnett_rejections(t_abs, corr, df, alpha)


def _world_arrays(c: ContrastArrays):
    p = np.where(c.failed | ~np.isfinite(c.p), 1.0, c.p)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_abs = np.where(c.failed, np.nan, np.abs(c.estimate / c.se))
    # Dunnett's df: the smallest of the contrasts' (as analyse's adjustment)
    df = np.where(c.failed.any(axis=1), np.nan, np.min(c.df, axis=1))
    return p, t_abs, df


def simulate_multi_arm(
    scenario: Scenario,
    analysis: Analysis,
    *,
    reps: int,
    seed: int,
    outcome: str | None = None,
    alpha: float = 0.05,
    chunk_size: int = BLOCK_SIZE,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    df: str = "satterthwaite",
) -> tuple[MultiArmPower, dict[str, ContrastArrays]]:
    """Per-contrast and decision operating characteristics of ``analysis`` on a scenario with
    three or more arms (with two it is the one contrast), on common random numbers with and
    without effects as :func:`trialsim.power.simulation.simulate_operating_characteristics`.

    Returns the summary and the replicate arrays of both worlds (``"effect"``, ``"null"``).

    Example
    -------
    >>> from trialsim.analyse.registry import get_analysis                # doctest: +SKIP
    >>> res, _ = simulate_multi_arm(s, get_analysis("lmm"), reps=1000, seed=1)  # doctest: +SKIP
    >>> res.decisions[1].any_power                                         # doctest: +SKIP
    """
    outcome = outcome or scenario.primary
    analysis = analysis.with_df(df)  # the mixed models' small-sample method
    one = scenario.with_outcomes([outcome])
    worlds = (one, null_scenario(one))
    chunks = [range(a, min(a + chunk_size, reps)) for a in range(0, reps, chunk_size)]

    def run(chunk: range) -> list[tuple[ContrastArrays, list]]:
        out = []
        for w in worlds:
            data = simulate_trials(w, chunk, seed=seed, threads=1, potential_outcomes=True)
            means = [_means(w, data.for_contrast(a), outcome, analysis) for a in arms]
            out.append((estimate_every_contrast(analysis, data, outcome), means))
        return out

    arms = one.arm_labels[1:]
    parts: list[list[tuple[ContrastArrays, list]]] = []
    for chunk, result in zip(chunks, map_in_threads(run, chunks, threads), strict=True):
        parts.append(result)
        if progress is not None:
            progress(len(chunk))
    eff = ContrastArrays.concat([p[0][0] for p in parts])
    nul = ContrastArrays.concat([p[1][0] for p in parts])
    truths = [
        truth_from_means(
            two_arm_subtrial(one, arm),
            outcome,
            analysis,
            _joined([p[0][1][j] for p in parts]),
            _joined([p[1][1][j] for p in parts]),
            reps,
            reps,
        )
        for j, arm in enumerate(arms)
    ]
    summary = _summarise_arms(one, outcome, analysis, eff, nul, alpha, truths)
    return summary, {"effect": eff, "null": nul}


def _joined(means: list[TrialMeans | None]) -> TrialMeans | None:
    return None if any(m is None for m in means) else TrialMeans.concat(means)


def _summarise_arms(s, outcome, analysis, eff, nul, alpha, truths) -> MultiArmPower:
    """The summary, each contrast scored against its :class:`Truth` (the potential outcomes
    of its arm against the reference; the closed form of the two-arm sub-trial beside it)."""
    arms = s.arm_labels[1:]
    ref = s.arm_labels[0]
    contrasts = tuple(
        ContrastCharacteristics(
            f"{arm} - {ref}",
            arm,
            _summarise(analysis.name, outcome, truths[j], eff.column(j), nul.column(j), alpha),
            truths[j],
        )
        for j, arm in enumerate(arms)
    )
    adjustments = ["none", "holm"] + (["dunnett"] if eff.corr is not None else [])
    on, off = _world_arrays(eff), _world_arrays(nul)
    reps = len(eff.estimate)
    decisions = []
    for name in adjustments:
        rej = _decisions(name, *on[:2], eff.corr, on[2], alpha)
        rej0 = _decisions(name, *off[:2], nul.corr, off[2], alpha)
        any_, all_, fwer = (
            float(rej.any(axis=1).mean()),
            float(rej.all(axis=1).mean()),
            float(rej0.any(axis=1).mean()),
        )
        decisions.append(
            ArmDecision(
                adjustment=name,
                reps=reps,
                any_power=any_,
                any_power_mcse=_binomial_mcse(any_, reps),
                all_power=all_,
                all_power_mcse=_binomial_mcse(all_, reps),
                fwer=fwer,
                fwer_mcse=_binomial_mcse(fwer, reps),
                contrast_power=tuple(float(x) for x in rej.mean(axis=0)),
            )
        )
    best, selected = _best_arm(s, outcome, arms, truths, eff)
    note = (
        "Dunnett: multivariate t with the contrasts' correlation from the joint fit, df the "
        + ("residual df" if eff.engine == "ols" else "smallest Satterthwaite df of the contrasts")
        if eff.corr is not None
        else f"Dunnett not available: {analysis.name} is not one joint Gaussian model (Holm only)"
    )
    return MultiArmPower(
        analysis=analysis.name,
        outcome=outcome,
        reference=ref,
        contrasts=contrasts,
        decisions=tuple(decisions),
        best_arm=best,
        best_arm_selected=selected,
        best_arm_selected_mcse=_binomial_mcse(selected, reps),
        dunnett_note=note,
    )


def _best_arm(s, outcome, arms, truths, eff) -> tuple[str | None, float]:
    """The truly best arm and how often the best estimate picks it (a failed fit never
    picks). Direction: the outcome's ``better``; ties in the truth: not scored (NaN)."""
    o = s.outcomes[outcome]
    sign = 1.0 if o.better == "higher" else -1.0
    scored = sign * np.asarray([t.value for t in truths])
    if not np.isfinite(scored).all() or np.sum(scored == scored.max()) > 1:
        return None, float("nan")
    best = int(np.argmax(scored))
    est = np.where(eff.failed, -np.inf, sign * eff.estimate)
    picked = (np.argmax(est, axis=1) == best) & ~eff.failed.all(axis=1)
    return arms[best], float(picked.mean())
