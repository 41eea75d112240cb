"""What every command shares: the one-line input error, option definitions, JSON output.

Errors are classified here (see :func:`friendly`): the project's :class:`UserError` (raised
where the input is validated; a scenario's :class:`ScenarioError` is one), an output path the
user can fix, and a request larger than the machine are the user's: one line, exit code 2.
Anything else - a plain ``ValueError`` included - propagates to the top-level command, which
reports an internal error (exit 1) with the traceback in a log file.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import click

from trialsim.errors import UserError, os_error_message
from trialsim.scenario import ScenarioError
from trialsim.seeds import MAX_SEED


class InputError(click.ClickException):
    """Bad input: printed as one line ``error: ...`` with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def user_message(exc: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for an internal error."""
    if isinstance(exc, UserError | ScenarioError):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        return os_error_message(exc)
    if isinstance(exc, MemoryError):
        return (
            "out of memory; use fewer --reps (power and sweep stream in chunks) or a smaller "
            "trial, or set --max-memory to be refused up front"
        )
    return None


class RunFailed(click.ClickException):
    """The input was fine but the statistics failed (a fit that cannot be done, every cell of
    a sweep failed): one line ``error: ...`` saying why, exit code 1."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def friendly(func):
    """Turn the user's errors into one-line CLI errors (exit 2), never a traceback; check a
    request's memory before running it (commands with --reps). Other errors propagate as
    internal errors (exit 1, see :mod:`trialsim.cli`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        max_memory = kwargs.pop("max_memory", None)
        max_time = kwargs.pop("max_time", None)
        try:
            _guard_resources(func.__name__, kwargs, max_memory, max_time)
            return func(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                raise
            raise InputError(message) from None

    return wrapper


def _guard_resources(
    command: str, kwargs: dict, max_memory: str | None, max_time: str | None = None
) -> None:
    """Refuse a request larger than the machine before running it: its memory (commands
    with a scenario and --reps) and its run time (simulate, power by simulation,
    sweep), printing a run-time estimate above a few seconds."""
    from trialsim import resources, run_time

    if max_memory is None:
        max_memory = os.environ.get("TRIALSIM_MAX_MEMORY") or None
    if max_time is None:
        max_time = os.environ.get("TRIALSIM_MAX_TIME") or None
    limit = resources.parse_size(max_memory) if max_memory is not None else None
    seconds = run_time.parse_duration(max_time) if max_time is not None else None
    reps, scenario = kwargs.get("reps"), kwargs.get("scenario")
    if reps is None or scenario is None or command not in resources.FACTOR:
        return
    from trialsim.scenario import load_scenario

    s = load_scenario(scenario, kwargs.get("overrides", ()))
    resources.check_request(command, s, reps, limit=limit)
    if command == "power" and kwargs.get("method") == "analytic":
        return
    cells = 1
    for axis in kwargs.get("axes") or ():
        cells *= len(axis.values)
    est = run_time.estimate_time(
        command, s, reps, cells=cells, workers=kwargs.get("jobs") or 1, out=kwargs.get("out")
    )
    if est is None:
        return
    run_time.check_time(est, seconds)
    if est.seconds > run_time.PRINT_ABOVE_SECONDS:
        click.echo(f"estimate: {est.describe()}", err=True)


# ---- options shared by several commands (defined once) ---------------------------------------

scenario_argument = click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario value, e.g. --set groups.icc_group=0.1 (repeatable).",
)

#: seeds are 0 .. 2**63 - 1 (numpy's SeedSequence takes non-negative integers)

seed_option = click.option(
    "--seed",
    default=20161,
    show_default=True,
    type=click.IntRange(0, MAX_SEED),
    help=f"Root seed, 0 to {MAX_SEED}: same seed, same results.",
)


class FiniteFloat(click.ParamType):
    """A finite float in an (optionally open) interval: NaN and inf are refused."""

    name = "float"

    def __init__(self, low=None, high=None, *, open_low=False, open_high=False):
        self.low, self.high, self.open_low, self.open_high = low, high, open_low, open_high

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        lo_bad = self.low is not None and (x <= self.low if self.open_low else x < self.low)
        hi_bad = self.high is not None and (x >= self.high if self.open_high else x > self.high)
        if lo_bad or hi_bad:
            lo = "(" if self.open_low else "["
            hi = ")" if self.open_high else "]"
            self.fail(f"{value} is not in {lo}{self.low}, {self.high}{hi}", param, ctx)
        return x


max_memory_option = click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Refuse requests estimated above SIZE (e.g. 4G; default: the memory available).",
)


max_time_option = click.option(
    "--max-time",
    default=None,
    metavar="DURATION",
    help="Refuse runs estimated longer than DURATION (e.g. 30m, 2h, 1d; default: 12h).",
)


def reps_option(default: int, *, timed: bool = False):
    """--reps with --max-memory (and --max-time for commands whose run time is estimated:
    ``timed``)."""
    reps = click.option(
        "--reps",
        default=default,
        show_default=True,
        type=click.IntRange(1),
        help="Replicate trials.",
    )

    def both(func):
        func = max_memory_option(func)
        return reps(max_time_option(func) if timed else func)

    return both


alpha_option = click.option(
    "--alpha",
    default=0.05,
    show_default=True,
    type=FiniteFloat(0, 1, open_low=True, open_high=True),
    help="Two-sided significance level.",
)
outcome_option = click.option("--outcome", default=None, help="Outcome (default: the primary).")


def target_power_option(help: str | None = None):
    return click.option(
        "--target-power",
        default=0.8,
        show_default=True,
        type=FiniteFloat(0, 1, open_low=True, open_high=True),
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
    metavar="ROLE=COLUMN,...",
    help=(
        "Data files: the file's column for each role (participant, arm, site - or "
        "municipality, school, stratum, centre -, cluster - or cohort, class -, group, trainer, "
        "period, visit, month, sessions_offered, sessions_attended, assessor_blinded, rep), "
        "e.g. --map participant=id,arm=gruppe,municipality=Kommune; NAME=COLUMN renames an "
        "outcome; treatment=LABEL,control=LABEL relabel arms (repeatable)."
    ),
)
wide_option = click.option(
    "--wide/--long",
    "wide",
    default=None,
    help="Data files: one row per person with <name>_<visit> columns (score_0, bdi.pre, "
    "bdi.8m, 'PSP 9 mdr', weight_post: wide) or one row per person and visit (long). "
    "Default: detected.",
)

_DATA_OPTIONS = (
    click.option(
        "--scenario",
        "data_scenario",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Data files: a scenario (.toml) whose outcomes give types, bounds, direction and "
        "MCID.",
    ),
    click.option(
        "--covariate",
        multiple=True,
        metavar="NAME[:numeric|:categorical]",
        help="Data files: a person-level column to adjust for (text values: categorical, "
        "levels sorted, the first the reference) (repeatable).",
    ),
    click.option(
        "--outcome-type",
        multiple=True,
        metavar="NAME=TYPE",
        help="Data files: continuous, bounded, count or binary (default: 0/1 values binary, "
        "else continuous) (repeatable).",
    ),
    click.option(
        "--better",
        "data_better",
        multiple=True,
        metavar="[NAME=]higher|lower",
        help="Direction of benefit: for the analysed outcome, or NAME=... (repeatable).",
    ),
    click.option(
        "--bounds",
        multiple=True,
        metavar="NAME=LOW,HIGH",
        help="Data files: the scale of an outcome; values outside are problems (repeatable).",
    ),
    click.option(
        "--mcid",
        "data_mcid",
        multiple=True,
        metavar="[NAME=]VALUE",
        help="Minimal clinically important difference: for the analysed outcome, or "
        "NAME=VALUE (repeatable).",
    ),
    click.option(
        "--reference",
        default=None,
        metavar="LABEL",
        help="Data files: the reference (control) arm's label (default: the one label named "
        "like a control: control, TAU, placebo, waitlist, 0, ...).",
    ),
    click.option(
        "--pool",
        multiple=True,
        metavar="NEW=A+B",
        help="Data files: analyse arm labels A and B as one arm NEW (repeatable).",
    ),
    click.option("--sheet", default=None, help="Data files: the .xlsx sheet (default: the first)."),
    click.option(
        "--visit-months",
        multiple=True,
        metavar="LABEL=MONTH,...",
        help="Wide data files: the month of a visit label, e.g. --visit-months post=3,1=6.",
    ),
)


def data_options(func):
    """Add every data-reading option (--map, --wide/--long, --scenario, --covariate,
    --outcome-type, --better, --bounds, --mcid, --reference, --pool, --sheet,
    --visit-months) and pass them to ``func`` as one keyword ``declared``
    (:class:`trialsim.io.declare.Declarations`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from trialsim.io.declare import Declarations

        try:
            declared = Declarations.from_options(
                mapping=kwargs.pop("mapping"),
                wide=kwargs.pop("wide"),
                scenario=kwargs.pop("data_scenario"),
                covariate=kwargs.pop("covariate"),
                outcome_type=kwargs.pop("outcome_type"),
                better=kwargs.pop("data_better"),
                bounds=kwargs.pop("bounds"),
                mcid=kwargs.pop("data_mcid"),
                reference=kwargs.pop("reference"),
                pool=kwargs.pop("pool"),
                sheet=kwargs.pop("sheet"),
                visit_months=kwargs.pop("visit_months"),
            )
        except ValueError as exc:
            message = user_message(exc)
            if message is None:
                raise
            raise InputError(message) from None
        return func(*args, declared=declared, **kwargs)

    for option in reversed((map_option, wide_option, *_DATA_OPTIONS)):
        wrapper = option(wrapper)
    return wrapper


def parse_rope(text: str | None) -> tuple[float, float] | None:
    """``--rope L,U`` (outcome units) as a pair, or None."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--rope {text!r}: expected L,U (outcome units), e.g. -2,2") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InputError(f"--rope {text!r}: needs finite L < U (outcome units), e.g. -2,2")
    return (low, high)


def echo_json(obj) -> None:
    from trialsim.files import to_json

    click.echo(to_json(obj))


def load_trial(data_file: Path, declared, outcome: str | None):
    """Read a trial-data file with what the user declared and settle the analysed outcome:
    ``(data, outcome)``. The outcome defaults to the primary (of a scenario or the sidecar of
    simulated data), else the only one; a
    bare ``--better``/``--mcid`` applies to it. Problems raise :class:`InputError`."""
    from dataclasses import replace

    from trialsim.io import read_trial_data

    data = read_trial_data(data_file, declared=declared)
    names = list(data.outcomes)
    if outcome is None:
        primary = data.structure.primary_outcome
        if primary in names:
            outcome = primary
        elif len(names) == 1:
            outcome = names[0]
        else:
            raise InputError(
                f"{data_file}: several outcomes ({', '.join(names)}); choose one with --outcome"
            )
    matches = [n for n in names if n.casefold() == outcome.casefold()]
    if not matches:
        raise InputError(
            f"--outcome {outcome}: not an outcome of {data_file}; it has {', '.join(names)}"
        )
    outcome = matches[0]
    spec = data.structure.outcome(outcome)
    better, mcid = declared.better_for(outcome), declared.mcid_for(outcome)
    if better is not None or mcid is not None:
        spec = replace(
            spec,
            better=better or spec.better,
            mcid=spec.mcid if mcid is None else mcid,
        )
        data = replace(data, structure=data.structure.with_outcome(spec))
    return data, outcome
