"""What every command shares: the one-line input error, option definitions, JSON output."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from trialsim.scenario import ScenarioError


class InputError(click.ClickException):
    """Bad input: printed as one line ``error: ...`` with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def friendly(func):
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


alpha_option = click.option(
    "--alpha",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Two-sided significance level.",
)
outcome_option = click.option("--outcome", default=None, help="Outcome (default: the primary).")


def target_power_option(help: str | None = None):
    return click.option(
        "--target-power",
        default=0.8,
        show_default=True,
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help=help,
    )


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output on screen.",
)


# ---- reading trial-data files ----

map_option = click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="SCHEMA=COLUMN,...",
    help=(
        "Data files: the file's column for each schema column, e.g. "
        "--map psp=PSP_total,arm=gruppe,municipality=Kommune; arm labels with "
        "treatment=SFT,control=Kontrol (repeatable)."
    ),
)
wide_option = click.option(
    "--wide/--long",
    "wide",
    default=None,
    help="Data files: one row per person with psp_0, psp_1, ... columns (wide) or one row per "
    "person and visit (long). Default: detected.",
)


def parse_rope(text: str | None) -> tuple[float, float] | None:
    """``--rope L,U`` (outcome units) as a pair, or None."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--rope {text!r}: expected L,U (outcome units), e.g. -2,2") from None
    return (low, high)


def echo_json(obj) -> None:
    from trialsim.files import to_json

    click.echo(to_json(obj))
