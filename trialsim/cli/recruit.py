"""`trialsim recruit`: recruitment, group formation and the trial timeline of a scenario."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import (
    InputError,
    emit,
    force_option,
    format_option,
    friendly,
    out_option,
    refuse_overwrite,
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
@out_option(
    "file",
    "(.png, .svg or .pdf) to draw the timeline in (cumulative enrolment per municipality "
    "and arm, group starts and cancellations, 10th-90th percentile bands).",
    suffixes=(".png", ".svg", ".pdf"),
    name="--plot",
)
@force_option
@set_option
@friendly
def recruit(
    scenario: Path,
    reps: int,
    seed: int,
    fmt: str,
    csv_dialect: str,
    plot: Path | None,
    force: bool,
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
      trialsim recruit scenarios/sft-19m.toml --reps 1000 --plot recruit.png --force
      trialsim recruit scenarios/sft-19m.toml --set design.randomisation=cohort --format json
      trialsim recruit scenarios/sft-19m.toml --set sites.recruitment.max_wait_months=4
    """
    from trialsim.report.progress import progress_bar
    from trialsim.report.timeline import recruitment_table, timeline_plot
    from trialsim.simulate.recruitment import simulate_recruitment

    refuse_overwrite([plot], force, "--plot")
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
    text = recruitment_table(summary)
    if plot is not None:
        text += f"\nwrote the timeline plot to {plot}"
    emit(
        fmt,
        text=text,
        record={
            **summary,
            "provenance": _provenance(s, seed, reps, overrides),
            **({"plot": str(plot)} if plot is not None else {}),
        },
        rows=result.to_frame,
        csv_dialect=csv_dialect,
    )


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
