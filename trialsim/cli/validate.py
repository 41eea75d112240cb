"""`trialsim validate`: check a scenario file (.toml) or a trial-data file (anything else)."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import InputError, data_options, friendly, set_option


@click.command()
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@data_options
@friendly
def validate(path: Path, overrides: tuple[str, ...], declared) -> None:
    """Check a scenario file or a trial-data file; nothing is written.

    A .toml FILE is a scenario: every key is checked (unknown keys, wrong types, out-of-range
    or inconsistent values) and a one-screen summary is printed.

    Any other FILE is trial data: CSV (also Danish ';' with decimal commas), Parquet, .xlsx
    (--sheet), .dta or .sav; long (one row per person and visit, a 'visit' column with
    0 = baseline), wide (one row per person, columns like score_0/score_1, bdi.pre/bdi.8m,
    'PSP 0 mdr'/'PSP 9 mdr', weight_pre/weight_post) or one row per person without a visit
    column (post-test only).

    \b
    Columns are read by role, by name or by --map ROLE=COLUMN:
      participant, arm (any labels; the reference by --reference or a control name),
      site (or municipality, school, stratum, centre), cluster (or cohort, class),
      group (delivery groups, in any arm), trainer, period, visit, month,
      sessions_offered, sessions_attended, assessor_blinded, rep (replicates).
    Other numeric columns are outcomes (types inferred unless --scenario, --outcome-type,
    --bounds, --better or --mcid declare them); --covariate NAME adjusts for a column; every
    other column is listed as ignored.

    The structure found (arms, what was randomised, groups, visits, outcomes, covariates) is
    printed first, then every problem on one line with its row and column: misspelt role
    names, values that are not numbers or outside declared bounds, duplicate
    participant-visit rows, values changing within a participant, groups spanning arms or
    sites, clusters spanning arms, attended > offered sessions, a single arm, an unknown
    reference arm, missing follow-up, unreadable wide visit labels. Any problem gives exit
    code 2.

    \b
    Examples:
      trialsim validate scenarios/sft-19m.toml
      trialsim validate scenarios/data/sft-example.csv \\
        --map participant=deltager,municipality=kommune,arm=gruppe,group=hold
      trialsim validate tests/data/real/anorexia.csv --reference Cont --map arm=treat
      trialsim validate tests/data/real/btheb.csv --covariate drug --covariate length \\
        --better lower
    """
    if path.suffix.lower() == ".toml":
        if declared.mapping or declared.wide is not None or _data_only(declared):
            raise InputError(
                "--map/--wide and the other data options apply to data files, not to a "
                "scenario (.toml)"
            )
        from trialsim.report.summary import scenario_summary
        from trialsim.scenario import load_scenario

        s = load_scenario(path, overrides)
        click.echo(scenario_summary(s, source=str(path)))
        return
    if overrides:
        raise InputError("--set applies to scenario files (.toml), not to data files")
    from trialsim.io import check_trial_file

    table = check_trial_file(path, declared=declared)
    for line in table.describe():
        click.echo(line)
    if table.problems:
        for line in table.problem_lines():
            click.echo(f"error: {line}", err=True)
        hints = [p.map_hint for p in table.problems if p.map_hint] or []
        hints += [h for h in table.hints if h not in hints]
        if hints and any(p.map_hint for p in table.problems):
            click.echo(f"hint: try --map {','.join(hints)}", err=True)
        raise click.exceptions.Exit(2)
    click.echo(f"{table.source}: valid trial data")


def _data_only(declared) -> bool:
    return bool(
        declared.scenario
        or declared.covariates
        or declared.outcome_types
        or declared.better
        or declared.bounds
        or declared.mcid
        or declared.reference
        or declared.pool
        or declared.sheet
        or declared.visit_months
    )
