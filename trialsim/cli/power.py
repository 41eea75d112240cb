"""`trialsim power`: analytic and simulated power, and solving for a sample size."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import (
    InputError,
    alpha_option,
    echo_json,
    format_option,
    friendly,
    reps_option,
    scenario_argument,
    seed_option,
    set_option,
    target_power_option,
)
from trialsim.scenario import load_scenario


@click.command()
@scenario_argument
@click.option(
    "--method",
    type=click.Choice(["analytic", "simulation", "both"]),
    default="both",
    show_default=True,
    help="Closed-form formula, simulation of the full trial, or both side by side.",
)
@click.option(
    "--analysis",
    "analyses",
    multiple=True,
    metavar="NAME",
    help="Analysis to simulate (repeatable with one outcome; at most one with several). "
    "Default: the one rule on the trial's structure and the outcome (printed with the "
    "results; e.g. 'poisson' for counts). See 'trialsim analyses'.",
)
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    metavar="NAME",
    help="Outcome to power (default: the primary). Repeat for several outcomes: each gets "
    "its own results and --decision sets how they combine.",
)
@click.option(
    "--decision",
    type=click.Choice(["all", "any"]),
    default=None,
    help="With several --outcome: 'all' = co-primary (every outcome significant at alpha), "
    "'any' = at least one significant after Holm adjustment. Both are reported; this one "
    "is shown first. Default: all.",
)
@reps_option(1000)
@seed_option
@alpha_option
@click.option(
    "--solve",
    "unknown",
    default=None,
    metavar="PARAM",
    help="Solve the analytic formula for one unknown: effect (minimum detectable effect); "
    "n_groups, group_size, n_control (individual/waitlist); n_clusters, cluster_size "
    "(cohort/municipality); clusters_per_step, n_per_period (stepped wedge).",
)
@target_power_option("Power the --solve unknown must reach.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a running-power plot (PNG/SVG) showing Monte Carlo convergence.",
)
@format_option
@set_option
@friendly
def power(
    scenario,
    method,
    analyses,
    outcomes,
    decision,
    reps,
    seed,
    alpha,
    unknown,
    target_power,
    plot,
    fmt,
    overrides,
):
    """Power of SCENARIO: analytic, by simulation, or both; or solve for a sample size.

    JSON (--format json) has a top-level 'analyses' list: per simulated analysis name,
    outcome, power, power_mcse, type1, bias, coverage, failures (and their MCSEs); per
    analytic formula name ('analytic-irgt', ...), outcome and power.

    Simulation reports, for each analysis, power, type-I error (the same trials with zero
    effect), bias, empirical SE, coverage and failures, each with its Monte Carlo SE. Bias
    counts everything the scenario builds in: unblinded assessors, informative dropout,
    self-selected attendance. Failed fits are counted: they never reject and never cover.

    With several --outcome the outcomes are simulated together (correlated) and the power of
    the decision over all of them is reported: 'all' (co-primary) or 'any' (Holm).

    Examples:

      trialsim power scenarios/sft-19m.toml --reps 2000

      trialsim power scenarios/sft-19m.toml --method analytic --solve n_groups

      trialsim power scenarios/sft-19m.toml --outcome psp --outcome mhrm --decision all
    """
    s = load_scenario(scenario, overrides)
    outcomes = list(dict.fromkeys(outcomes or [s.primary]))
    unknown_outcomes = [o for o in outcomes if o not in s.outcomes]
    if unknown_outcomes:
        raise InputError(
            f"--outcome {unknown_outcomes[0]}: not in the scenario; choose from {list(s.outcomes)}"
        )
    several = len(outcomes) > 1
    if several:
        _check_several_outcomes(analyses, unknown, plot)
    elif decision is not None:
        raise InputError("--decision needs at least two --outcome options (e.g. psp and mhrm)")
    result = {
        "scenario": s.name,
        "scenario_sha256": s.digest(),
        "outcome": outcomes[0],
        "outcomes": outcomes,
        "seed": seed,
        "reps": reps,
        "alpha": alpha,
        "versions": _versions(),
        "analyses": [],  # simulated analyses and analytic formulas, one entry each
    }
    if unknown:
        from trialsim.power.from_scenario import analytic_solve

        result["solve"] = analytic_solve(s, unknown, target_power, outcomes[0])
    if method in ("analytic", "both"):
        result["analytic"] = _analytic(s, outcomes, strict=method == "analytic")
        by_outcome = result["analytic"] if several else {outcomes[0]: result["analytic"]}
        result["analyses"] += [
            {"name": f"analytic-{a['formula']}", "method": "analytic", "outcome": o, **a}
            for o, a in by_outcome.items()
            if "error" not in a
        ]
    if method in ("simulation", "both"):
        if several:
            _simulate_several(result, s, outcomes, analyses, decision or "all", reps, seed, alpha)
        else:
            _simulate_one(result, s, outcomes[0], analyses, reps, seed, alpha, plot)
    if fmt == "json":
        echo_json(result)
    else:
        from trialsim.report.tables import power_table

        click.echo(power_table(result))
        for entry in result.get("choices", []):
            prefix = f"{entry['outcome']}: " if several else ""
            click.echo(prefix + entry["line"])
            if "note" in entry:
                click.echo(f"note: {entry['note']}")


def _check_several_outcomes(analyses, unknown, plot) -> None:
    if len(analyses) > 1:
        raise InputError(
            "with several --outcome give at most one --analysis (used for every outcome), "
            "or none for the default per outcome type"
        )
    if unknown:
        raise InputError("--solve works with one --outcome; drop the others or run it per outcome")
    if plot:
        raise InputError("--plot works with one --outcome; drop the others or run it per outcome")


def _versions() -> dict:
    from trialsim.files import package_versions

    return package_versions(("trialsim", "numpy", "scipy", "statsmodels"))


def _choose(result, s, outcome: str, analyses) -> list[str]:
    """The analyses to simulate for ``outcome``: ``--analysis`` or the one default rule
    (:func:`trialsim.analyse.registry.default_analysis` on the scenario's structure). The
    choice and its reason go into ``result["choices"]`` (printed and in the JSON)."""
    from trialsim.analyse.registry import default_analysis
    from trialsim.power.simulation import estimand_note

    choice = default_analysis(s.structure, outcome)
    names = list(analyses) or [choice.name]
    for name in names:
        default = not analyses
        entry = {
            "outcome": outcome,
            "name": name,
            "reason": choice.reason if default else "--analysis",
            "default": choice.name,
            "default_reason": choice.reason,
            "line": choice.line()
            if default
            else f"analysis: {name} (chosen with --analysis; the default is {choice.name})",
        }
        note = estimand_note(s, outcome, name)
        if note is not None:
            entry["note"] = note
        result.setdefault("choices", []).append(entry)
    return names


def _analytic(s, outcomes: list[str], *, strict: bool):
    """Analytic power of each outcome; an error is raised (``strict``) or reported."""
    from trialsim.power.from_scenario import analytic_power

    by_outcome = {}
    for outcome in outcomes:
        try:
            by_outcome[outcome] = analytic_power(s, outcome)
        except ValueError as exc:
            if strict and len(outcomes) == 1:
                raise
            by_outcome[outcome] = {"error": str(exc)}
    return by_outcome[outcomes[0]] if len(outcomes) == 1 else by_outcome


def _simulate_one(result, s, outcome, analyses, reps, seed, alpha, plot) -> None:
    from trialsim.power.simulation import simulate_operating_characteristics
    from trialsim.report.progress import progress_bar

    names = _choose(result, s, outcome, analyses)
    with progress_bar(reps, "simulating") as advance:
        ocs, p_values = simulate_operating_characteristics(
            s, names, reps=reps, seed=seed, outcome=outcome, alpha=alpha, progress=advance
        )
    result["analyses"] += [_simulated_entry(result, oc) for oc in ocs]
    if plot:
        from trialsim.report.plots import running_power_plot

        running_power_plot(p_values, alpha, plot, title=f"{s.name}: {outcome}")


def _simulate_several(result, s, outcomes, analyses, rule, reps, seed, alpha) -> None:
    from trialsim.power.simulation import simulate_multiple_outcomes
    from trialsim.report.progress import progress_bar

    names = {o: _choose(result, s, o, analyses)[0] for o in outcomes}
    with progress_bar(reps, "simulating") as advance:
        per_outcome, decisions = simulate_multiple_outcomes(
            s, names, outcomes, reps=reps, seed=seed, alpha=alpha, progress=advance
        )
    result["analyses"] += [_simulated_entry(result, oc) for oc in per_outcome]
    result["decision"] = decisions[rule].as_dict()
    result["decisions"] = {k: d.as_dict() for k, d in decisions.items()}


def _simulated_entry(result, oc) -> dict:
    """One simulated analysis for the JSON, with why it was used (``reason``)."""
    reason = next(
        (
            c["reason"]
            for c in result.get("choices", [])
            if (c["outcome"], c["name"]) == (oc.outcome, oc.analysis)
        ),
        None,
    )
    return {**oc.as_dict(), "method": "simulation", "reason": reason}
