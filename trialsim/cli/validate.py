"""`trialsim validate`: check a scenario file and summarise it."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import friendly, scenario_argument, set_option
from trialsim.scenario import load_scenario


@click.command()
@scenario_argument
@set_option
@friendly
def validate(scenario: Path, overrides: tuple[str, ...]) -> None:
    """Check a scenario file and print a one-screen summary of it.

    Every key is checked (unknown keys, wrong types, out-of-range or inconsistent values);
    a problem prints one line naming the file, key, value and what is allowed (exit code 2).
    """
    from trialsim.report.summary import scenario_summary

    s = load_scenario(scenario, overrides)
    click.echo(scenario_summary(s, source=str(scenario)))
