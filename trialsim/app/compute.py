"""The library calls behind the planner, the same as the command line's (no statistics of
the app's own). Every function takes a validated :class:`~trialsim.scenario.Scenario`."""

from __future__ import annotations

import inspect
import shlex
import threading
from collections.abc import Callable
from pathlib import Path

from trialsim.errors import UserError

#: the unknown the power curve varies for each analytic formula (``trialsim power --solve``)
CURVE_UNKNOWN = {"irgt": "n_groups", "crt": "n_clusters", "stepped_wedge": "clusters_per_step"}


class Cancelled(Exception):
    """A background computation stopped because the inputs changed or the user cancelled."""


def build(raw: dict, overrides: list[str], source: str):
    """The scenario of ``raw`` with ``overrides`` (``key=value``), validated as
    ``trialsim ... --set`` does (raises :class:`~trialsim.scenario.ScenarioError`)."""
    from trialsim.scenario import apply_overrides, scenario_from_dict

    return scenario_from_dict(apply_overrides(raw, overrides, source=source), source=source)


def merged_raw(raw: dict, overrides: list[str], source: str) -> dict:
    from trialsim.scenario import apply_overrides

    return apply_overrides(raw, overrides, source=source)


def analytic(s, outcome: str, target_power: float) -> dict:
    """Analytic power and the count for ``target_power`` (``trialsim power --method analytic
    --solve ...``); ``{"error": ...}`` where no formula applies."""
    from trialsim.power.from_scenario import analytic_power, analytic_solve

    try:
        out = analytic_power(s, outcome)
    except ValueError as exc:
        return {"error": str(exc)}
    unknown = CURVE_UNKNOWN[out["formula"]]
    try:
        out["solve"] = analytic_solve(s, unknown, target_power, outcome)
    except ValueError as exc:
        out["solve"] = {"error": str(exc)}
    return out


def power_curve(
    s, outcome: str, target_power: float, *, points: int = 40, answer: dict | None = None
) -> dict | None:
    """Analytic power against the formula's count (treatment groups, clusters, clusters per
    step), the allocation held (see :func:`_at_count`), everything else as the scenario sets
    it; None without a formula or a count to vary."""
    from trialsim.power import analytic as formulas
    from trialsim.power.from_scenario import analytic_parameters

    functions = {
        "irgt": formulas.power_irgt,
        "crt": formulas.power_crt,
        "stepped_wedge": formulas.power_stepped_wedge,
    }
    if answer is not None and "formula" in answer:  # the inputs analytic() already derived
        formula = answer["formula"]
        accepted = inspect.signature(functions[formula]).parameters
        params = {k: v for k, v in answer.items() if k in accepted}
    else:
        try:
            formula, params = analytic_parameters(s, outcome)
        except ValueError:
            return None
    unknown = CURVE_UNKNOWN[formula]
    if unknown not in params:
        return None
    fn = functions[formula]
    now = int(params[unknown])
    top = max(2 * now, now + 10)
    lowest = 2 if formula != "stepped_wedge" else 1
    if top - lowest <= 3 * points:  # every count
        xs = list(range(lowest, top + 1))
    else:
        xs = sorted({round(lowest + (top - lowest) * i / (points - 1)) for i in range(points)})
    powers = []
    for x in xs:
        try:
            powers.append(float(fn(**_at_count(params, unknown, x))))
        except ValueError:
            powers.append(float("nan"))
    return {
        "formula": formula,
        "unknown": unknown,
        "x": xs,
        "power": powers,
        "now": now,
        "target_power": target_power,
    }


def _at_count(params: dict, unknown: str, x: int) -> dict:
    """The formula's inputs at ``x`` groups (clusters) with the allocation held, as
    ``trialsim power --solve`` holds it by default: the controls (and any control groups)
    grow with the treated groups; a cluster design keeps its ratio of control clusters."""
    out = dict(params, **{unknown: x})
    if unknown == "n_groups":
        factor = x / params["n_groups"]
        out["n_control"] = params["n_control"] * factor
        if params.get("n_control_groups") is not None:
            out["n_control_groups"] = max(2.0, params["n_control_groups"] * factor)
    return out


def default_choice(s, outcome: str):
    from trialsim.analyse.registry import default_analysis

    return default_analysis(s.structure, outcome)


def simulate(
    s,
    outcome: str,
    *,
    reps: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Simulated power, type-I error, bias and coverage (with MCSEs) of the default analysis,
    as ``trialsim power --method simulation``; stops with :class:`Cancelled` when ``cancel``
    is set (checked after each block of replicates)."""
    from trialsim.power.simulation import simulate_operating_characteristics

    choice = default_choice(s, outcome)

    def advance(n: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled
        if progress is not None:
            progress(n)

    ocs, _ = simulate_operating_characteristics(
        s, [choice.name], reps=reps, seed=seed, outcome=outcome, progress=advance
    )
    return {**ocs[0].as_dict(), "method": "simulation", "reason": choice.reason,
            "line": choice.line()}  # fmt: skip


def compare(s, outcome: str, *, reps: int, seed: int, progress=None, cancel=None):
    """The randomisation designs on common random numbers (``trialsim compare``)."""
    from trialsim.design.compare import compare_designs

    def advance(n: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled
        if progress is not None:
            progress(n)

    return compare_designs(s, reps=reps, seed=seed, outcome=outcome, progress=advance)


def recruit(s, *, reps: int, seed: int):
    """The recruitment timeline (``trialsim recruit``); ValueError without a
    ``[sites.recruitment]`` section."""
    from trialsim.simulate.recruitment import simulate_recruitment

    if s.sites.recruitment is None:
        raise UserError(
            "no [sites.recruitment] section; copy the one in scenarios/sft-19m.toml and adapt it"
        )
    return simulate_recruitment(s, reps, seed=seed)


def cli_command(
    path: str,
    overrides: list[str],
    *,
    reps: int,
    seed: int,
    outcome: str | None = None,
    command: str = "power",
) -> str:
    """The command line reproducing the planner's answer."""
    words = ["trialsim", command, str(path)]
    if outcome is not None:
        words += ["--outcome", outcome]
    for item in overrides:
        words += ["--set", item]
    words += ["--reps", str(reps), "--seed", str(seed)]
    return " ".join(shlex.quote(w) for w in words)


def evaluate(path: Path, *, mapping: str, outcome: str | None, better: str | None,
             mcid: float | None, scenario: Path | None = None) -> dict:  # fmt: skip
    """An evaluator's analysis of a trial-data file, as ``trialsim analyse`` and ``trialsim
    bayes --method exact``: the structure found, the default (frequentist) analysis of every
    contrast, and the exact posterior of the effect (first contrast). Bad input raises
    ValueError or click's exception with the command line's one-line message."""
    from trialsim.analyse.registry import default_analysis, estimate_contrasts, get_analysis
    from trialsim.bayes.analysis import BayesSettings, default_model, fit_trial
    from trialsim.cli.common import load_trial
    from trialsim.io.declare import Declarations

    declared = Declarations.from_options(
        mapping=tuple(m for m in [mapping.strip()] if m),
        better=(better,) if better else (),
        mcid=(str(mcid),) if mcid else (),
        scenario=scenario,
    )
    data, outcome = load_trial(path, declared, outcome or None)
    st = data.structure
    choice = default_analysis(st, outcome)
    frame = estimate_contrasts(get_analysis(choice.name), data, outcome)
    out = {
        "outcome": outcome,
        "structure": st.describe(),
        "analysis_line": choice.line(),
        "frequentist": frame.to_dict(orient="records"),
    }
    two = data.for_contrast(st.contrasts[0]).two_arms() if st.n_arms > 2 else data
    model, reason = default_model(st, outcome)
    priors = None
    if scenario is not None:
        from trialsim.scenario import load_scenario

        priors = load_scenario(scenario).analysis
    settings = BayesSettings.for_outcome(st, outcome, priors, model=model)
    result = fit_trial(two, outcome, settings, method="exact")
    out["bayes"] = {**result.as_dict(), "model_line": f"model: {model} (default: {reason})"}
    out["posterior"] = exact_posterior(two, outcome, settings)
    return out


def exact_posterior(data, outcome: str, settings) -> object:
    """The :class:`~trialsim.bayes.fast.FastPosterior` behind ``fit_trial(method="exact")``
    (the same calls, kept for the posterior plot: the result record holds only its summary)."""
    from trialsim.analyse.prepare import ancova_arrays
    from trialsim.bayes.analysis import outcome_sd, random_effect_units
    from trialsim.bayes.fast import fast_posterior

    a = ancova_arrays(data, outcome)
    prior, group_prior = settings.priors(outcome_sd(a, 0))
    units = random_effect_units(a, settings.model)
    return fast_posterior(
        a.y[:1], a.X[:1], units[:1], a.mask[:1], prior=prior, group_prior=group_prior
    )
