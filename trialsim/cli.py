"""The ``trialsim`` command line: parse, call the library, write outputs.

Exit codes: 0 success, 2 bad input or usage (one line: what, where, how to fix), 1 internal
error.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
import numpy as np

from trialsim.scenario import ScenarioError, load_scenario


class InputError(click.ClickException):
    """Bad input: printed as one line ``error: ...`` with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _friendly(func):
    """Turn library input errors into one-line CLI errors (exit 2), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ScenarioError, ValueError) as exc:
            raise InputError(str(exc)) from None

    return wrapper


# ---- options shared by several commands (defined once) ---------------------------------------

scenario_argument = click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario value, e.g. --set groups.icc_group=0.1 (repeatable).",
)
seed_option = click.option(
    "--seed", default=20161, show_default=True, help="Root seed: same seed, same results."
)


def reps_option(default: int):
    return click.option(
        "--reps",
        default=default,
        show_default=True,
        type=click.IntRange(1),
        help="Replicate trials.",
    )


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output on screen.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="trialsim")
def main() -> None:
    """Plan and analyse clustered group trials (e.g. group social skills training).

    A scenario file (scenarios/*.toml) describes the trial: municipalities, randomisation unit,
    groups and trainers, attendance, outcomes, dropout and blinding. Start with

      trialsim validate scenarios/sft-19m.toml

    then simulate trials, compute power, or analyse data.
    """


@main.command()
@scenario_argument
@set_option
@_friendly
def validate(scenario: Path, overrides: tuple[str, ...]) -> None:
    """Check a scenario file and print a one-screen summary of it.

    Every key is checked (unknown keys, wrong types, out-of-range or inconsistent values);
    a problem prints one line naming the file, key, value and what is allowed (exit code 2).
    """
    from trialsim.report.summary import scenario_summary

    s = load_scenario(scenario, overrides)
    click.echo(scenario_summary(s, source=str(scenario)))


@main.command()
@scenario_argument
@reps_option(100)
@seed_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output table: FILE.csv or FILE.parquet (long format, one row per participant per visit).",
)
@click.option(
    "--outcomes",
    default=None,
    metavar="NAMES",
    help="Comma-separated subset of the scenario's outcomes (default: all).",
)
@set_option
@_friendly
def simulate(
    scenario: Path,
    reps: int,
    seed: int,
    out: Path,
    outcomes: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Simulate replicate trials of SCENARIO and write them as a tidy table.

    Columns: rep, participant, municipality, arm, group, trainer, visit, month, one column per
    outcome, sessions_offered, sessions_attended, assessor_blinded. Missing measurements
    (dropout) are empty cells. Replicate r is identical for the same --seed however many
    replicates are drawn.

    Example: trialsim simulate scenarios/sft-19m.toml --reps 10 --out sft.csv
    """
    from trialsim.data import write_table
    from trialsim.report.progress import progress_bar
    from trialsim.simulate import simulate_trials

    if out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"--out {out}: use a .csv or .parquet file name")
    s = load_scenario(scenario, overrides)
    if outcomes:
        s = s.with_outcomes([name.strip() for name in outcomes.split(",")])
    with progress_bar(reps, "simulating") as advance:
        data = simulate_trials(s, reps, seed=seed, progress=advance)
    frame = data.to_frame()
    write_table(frame, out)
    click.echo(
        f"wrote {len(frame):,} rows ({reps} replicates x {data.n_participants} "
        f"participants x {data.n_visits} visits) to {out}"
    )


@main.command()
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
@_friendly
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
        _echo_json(result)
    else:
        click.echo(power_table(result))


@main.command()
@click.argument("data_file", metavar="DATA", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--outcome", default="psp", show_default=True, help="Outcome column to analyse.")
@click.option(
    "--method",
    "method",
    default="mixed",
    show_default=True,
    metavar="NAME",
    help="Analysis (see 'trialsim analyses').",
)
@format_option
@_friendly
def analyse(data_file, outcome, method, fmt):
    """Run one analysis on a trial-data file (real or simulated, CSV or Parquet).

    With a 'rep' column (simulated batches) there is one result row per replicate with
    rep, estimate, se, df, p_value, ci_low, ci_high and the variance components.

    Example: trialsim analyse sft.csv --outcome psp --method mixed
    """
    from trialsim.analyse.registry import get_analysis
    from trialsim.data import read_trial_data

    analysis = get_analysis(method)
    data = read_trial_data(data_file)
    frame = analysis.run(data, outcome).to_frame(rep=data.rep)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        _echo_json(
            {
                "data": str(data_file),
                "outcome": outcome,
                "analysis": method,
                "design": data.design,
                "results": frame.to_dict(orient="records"),
            }
        )
    else:
        click.echo(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))


@main.command("analyses")
def list_analyses():
    """List the analyses with what each estimates."""
    from trialsim.analyse.registry import ANALYSES

    for a in ANALYSES.values():
        click.echo(f"{a.name:<16} {a.description}")


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
