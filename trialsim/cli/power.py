"""`trialsim power`: analytic and simulated power, and solving for a sample size."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import (
    InputError,
    echo_json,
    format_option,
    friendly,
    reps_option,
    scenario_argument,
    seed_option,
    set_option,
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
    help="Analysis to simulate (repeatable; default: the design's mixed model). "
    "See 'trialsim analyses'.",
)
@click.option("--outcome", default=None, help="Outcome to power (default: the primary).")
@reps_option(1000)
@seed_option
@click.option(
    "--alpha",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
)
@click.option(
    "--solve",
    "unknown",
    default=None,
    metavar="PARAM",
    help="Solve the analytic formula for one of effect, n_groups, group_size, n_control, "
    "n_clusters, cluster_size.",
)
@click.option(
    "--target-power",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
)
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
    outcome,
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

    Simulation reports, for each analysis, power, type-I error (the same trials with zero
    effect), bias, empirical SE, coverage and failures, each with its Monte Carlo SE. Bias
    counts everything the scenario builds in: unblinded assessors, informative dropout,
    self-selected attendance.

    Examples:

      trialsim power scenarios/sft-19m.toml --reps 2000

      trialsim power scenarios/sft-19m.toml --method analytic --solve n_groups
    """
    from trialsim.analyse.registry import default_analysis
    from trialsim.power.from_scenario import analytic_power, analytic_solve
    from trialsim.power.simulation import simulate_operating_characteristics
    from trialsim.report.progress import progress_bar
    from trialsim.report.tables import power_table

    s = load_scenario(scenario, overrides)
    outcome = outcome or s.primary
    if outcome not in s.outcomes:
        raise InputError(
            f"--outcome {outcome}: not in the scenario; choose from {list(s.outcomes)}"
        )
    result = {
        "scenario": s.name,
        "scenario_sha256": s.digest(),
        "outcome": outcome,
        "seed": seed,
        "alpha": alpha,
        "analyses": [],
    }
    if unknown:
        result["solve"] = analytic_solve(s, unknown, target_power, outcome)
    if method in ("analytic", "both"):
        try:
            result["analytic"] = analytic_power(s, outcome)
        except ValueError as exc:
            if method == "analytic":
                raise
            result["analytic"] = {"error": str(exc)}
    if method in ("simulation", "both"):
        names = list(analyses) or [default_analysis(s.design.randomisation)]
        with progress_bar(reps, "simulating") as advance:
            ocs, p_values = simulate_operating_characteristics(
                s, names, reps=reps, seed=seed, outcome=outcome, alpha=alpha, progress=advance
            )
        result["analyses"] = [oc.as_dict() for oc in ocs]
        if plot:
            from trialsim.report.plots import running_power_plot

            running_power_plot(p_values, alpha, plot, title=f"{s.name}: {outcome}")
    if fmt == "json":
        echo_json(result)
    else:
        click.echo(power_table(result))
