"""`trialsim recruit`: recruitment, group formation and the trial timeline of a scenario."""

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
@reps_option(500)
@seed_option
@format_option
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw the timeline (cumulative enrolment per municipality and arm, group starts "
    "and cancellations, 10th-90th percentile bands) to FILE.png, .svg or .pdf.",
)
@set_option
@friendly
def recruit(
    scenario: Path,
    reps: int,
    seed: int,
    fmt: str,
    plot: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Simulate how long recruitment of SCENARIO takes and what it costs.

    Per municipality, referrals arrive over calendar time, pass screening, the assessment
    interview and consent (lower when individuals are randomised); the treated wait until
    their group has enough members (or a maximum waiting time passes: the group then starts
    smaller or is cancelled), and some disappear while waiting. The scenario's
    [sites.recruitment] section holds every rate, share and staff-hour cost.

    Output: months to full enrolment, groups started and cancelled, people recruited,
    randomised and lost before start, staff hours by activity and the sample at each visit,
    each as median with 10th and 90th percentiles over replicates (--format json adds
    provenance; --format csv prints one row per replicate).

    Examples:

    \b
      trialsim recruit scenarios/sft-19m.toml --reps 1000 --plot recruit.png
      trialsim recruit scenarios/sft-19m.toml --set design.randomisation=cohort --format json
      trialsim recruit scenarios/sft-19m.toml --set sites.recruitment.max_wait_months=4
    """
    from trialsim.files import check_figure_path
    from trialsim.report.progress import progress_bar
    from trialsim.report.timeline import recruitment_table, timeline_plot
    from trialsim.simulate.recruitment import simulate_recruitment

    if plot is not None:
        check_figure_path(plot)
    s = load_scenario(scenario, overrides)
    if s.sites.recruitment is None:
        raise InputError(
            f"{scenario}: no [sites.recruitment] section; copy the one in "
            "scenarios/sft-19m.toml and adapt it"
        )
    with progress_bar(reps, "recruiting") as advance:
        result = simulate_recruitment(s, reps, seed=seed, progress=advance)
    summary = result.summary()
    if plot is not None:
        timeline_plot(result, plot)
    if fmt == "json":
        echo_json(
            {
                **summary,
                "provenance": _provenance(s, seed, reps, overrides),
                **({"plot": str(plot)} if plot is not None else {}),
            }
        )
    elif fmt == "csv":
        click.echo(result.to_frame().to_csv(index=False), nl=False)
    else:
        click.echo(recruitment_table(summary))
        if plot is not None:
            click.echo(f"wrote the timeline plot to {plot}")


def _provenance(s, seed: int, reps: int, overrides) -> dict:
    import platform
    from importlib.metadata import version

    return {
        "scenario_sha256": s.digest(),
        "seed": seed,
        "reps": reps,
        "overrides": list(overrides),
        "python": platform.python_version(),
        "packages": {p: version(p) for p in ("trialsim", "numpy", "scipy", "pydantic")},
    }
