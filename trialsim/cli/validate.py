"""`trialsim validate`: check a scenario file (.toml) or a trial-data file (anything else)."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import InputError, friendly, map_option, set_option, wide_option


@click.command()
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@map_option
@wide_option
@friendly
def validate(path: Path, overrides: tuple[str, ...], mapping, wide) -> None:
    """Check a scenario file or a trial-data file; nothing is written.

    A .toml FILE is a scenario: every key is checked (unknown keys, wrong types, out-of-range
    or inconsistent values) and a one-screen summary is printed.

    Any other FILE is trial data (CSV - also Danish ';' with decimal commas -, Parquet,
    .xlsx, .dta, .sav; long or wide, see DESIGN.md §6). It is checked for missing or
    misspelt columns, wrong types, duplicate participant-visit rows, controls in groups under
    individual randomisation, groups spanning arms or municipalities, attended > offered
    sessions, a single arm and missing follow-up. Every problem is one line with its row and
    column; any problem gives exit code 2.

    \b
    Examples:
      trialsim validate scenarios/sft-19m.toml
      trialsim validate scenarios/data/sft-example.csv \\
        --map participant=deltager,municipality=kommune,arm=gruppe,group=hold
    """
    if path.suffix.lower() == ".toml":
        if mapping or wide is not None:
            raise InputError("--map/--wide apply to data files, not to a scenario (.toml)")
        from trialsim.report.summary import scenario_summary
        from trialsim.scenario import load_scenario

        s = load_scenario(path, overrides)
        click.echo(scenario_summary(s, source=str(path)))
        return
    if overrides:
        raise InputError("--set applies to scenario files (.toml), not to data files")
    from trialsim.io import check_trial_file

    table = check_trial_file(path, mapping, wide)
    if table.problems:
        for line in table.problem_lines():
            click.echo(f"error: {line}", err=True)
        hints = [p.map_hint for p in table.problems if p.map_hint]
        if len(hints) > 1:
            click.echo(f"hint: try --map {','.join(hints)}", err=True)
        raise click.exceptions.Exit(2)
    click.echo(data_summary(table))


def data_summary(table) -> str:
    """A few lines describing a valid trial-data table."""
    from trialsim.io.checks import infer_design
    from trialsim.io.mapping import OUTCOMES

    f = table.frame
    people = f.drop_duplicates("participant")
    arms = people["arm"].value_counts()
    outcomes = [o for o in OUTCOMES if o in f]
    last = f[f["visit"] == f["visit"].max()]
    lines = [
        f"{table.source}: valid trial data ({'wide' if table.wide else 'long'} layout)",
        f"design      {infer_design(f)} randomisation (inferred)",
        f"people      {len(people)} ({arms.get('treatment', 0)} treatment, "
        f"{arms.get('control', 0)} control) in {people['municipality'].nunique()} "
        f"municipalities, {people['group'].nunique()} groups",
        f"visits      {', '.join(str(int(v)) for v in sorted(f['visit'].unique()))}",
    ]
    for o in outcomes:
        share = last[o].notna().mean()
        lines.append(f"outcome     {o}: measured at the last visit for {share:.0%}")
    return "\n".join(lines)
