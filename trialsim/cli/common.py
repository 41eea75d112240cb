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


df_option = click.option(
    "--df",
    "df_method",
    type=click.Choice(["satterthwaite", "kenward-roger"]),
    default="satterthwaite",
    show_default=True,
    help="Small-sample degrees of freedom (and SE) of the REML mixed models: Satterthwaite "
    "(as lmerTest) or Kenward-Roger (pbkrtest's adjusted covariance and df; slower). "
    "Analyses that are not mixed models keep their own df and refuse kenward-roger.",
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


formula_option = click.option(
    "--formula",
    default=None,
    metavar="TEXT",
    help="Fit this model on every simulated trial instead of an --analysis: lme4 notation "
    "with the scenario's roles and [covariates] names, random intercepts only, e.g. "
    '"psp ~ arm + baseline + municipality + (1 | group) + (1 | trainer)"; printed back '
    "with the results.",
)


# ---- the command-line conventions (one spelling per concept across commands) -----------------
#
# the analysis is --analysis; how an answer is computed is --method; --out is a folder for
# commands that write several files and a file for those that write one; --format
# table|json|csv (+ --csv-dialect) for results on screen; an existing output is kept unless
# --force; an interval is written LOW,HIGH. Old spellings are hidden aliases for one release.


def deprecation(old: str, new: str) -> None:
    """The one-line notice printed when a deprecated spelling is used (it still works)."""
    click.echo(f"warning: {old} is deprecated; use {new}", err=True)


class ConventionCommand(click.Command):
    """A command that accepts old option spellings for one release: ``aliases`` maps an old
    option (``--method``) to its new name (``--analysis``); ``interval_pairs`` lists interval
    options (``--ci``) whose old form took two values (``--ci LOW HIGH``), now ``LOW,HIGH``.
    Neither shows in ``--help``; each use prints :func:`deprecation` on stderr."""

    def __init__(self, *args, aliases=None, interval_pairs=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.deprecated_aliases = dict(aliases or {})
        self.interval_pairs = tuple(interval_pairs)

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, self.rewrite_deprecated(list(args)))

    def rewrite_deprecated(self, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                out += args[i:]
                break
            name, eq, value = arg.partition("=")
            if name in self.deprecated_aliases:
                new = self.deprecated_aliases[name]
                deprecation(name, new)
                out.append(new + eq + value)
                i += 1
                continue
            if arg in self.interval_pairs and _two_numbers(args[i + 1 : i + 3]):
                deprecation(f"{arg} LOW HIGH", f"{arg} LOW,HIGH")
                out += [arg, f"{args[i + 1]},{args[i + 2]}"]
                i += 3
                continue
            out.append(arg)
            i += 1
        return out


def _two_numbers(tokens: list[str]) -> bool:
    if len(tokens) != 2 or any("," in t for t in tokens):
        return False
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return True


def parse_interval(text: str | None, option: str, example: str = "-2,2"):
    """An interval ``LOW,HIGH`` (``--rope``, ``--ci``, ...) as a pair of finite floats with
    LOW < HIGH, or None; else a one-line :class:`InputError` naming the option."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} {text!r}: expected LOW,HIGH, e.g. {option} {example}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"{option} {text!r}: give finite numbers, e.g. {option} {example}")
    if not low < high:
        raise InputError(f"{option} {text!r}: HIGH must exceed LOW, e.g. {option} {example}")
    return (low, high)


rope_option = click.option(
    "--rope",
    default=None,
    metavar="LOW,HIGH",
    help="Region of practical equivalence (outcome units), e.g. --rope=-2,2.",
)


def parse_rope(text: str | None) -> tuple[float, float] | None:
    """``--rope LOW,HIGH`` (outcome units) as a pair, or None."""
    return parse_interval(text, "--rope")


# ---- output locations: --out (file or folder), --force -----------------------------------------

#: suffixes that make a name a file, not a folder (a folder --out given one is a mistake)
FILE_SUFFIXES = (
    ".csv", ".json", ".parquet", ".png", ".svg", ".pdf", ".toml", ".html", ".md", ".nc",
    ".txt", ".xlsx", ".tsv",
)  # fmt: skip


class OutPath(click.ParamType):
    """An output path that must be a folder (``kind="folder"``) or a file (``"file"``, with
    one of ``suffixes``): the other is a one-line usage error (exit 2). ``legacy`` suffixes
    of a folder option pass through (an old file form the command still accepts)."""

    name = "path"

    def __init__(self, kind: str, suffixes: tuple[str, ...] = (), legacy: tuple[str, ...] = ()):
        assert kind in ("file", "folder")
        self.kind, self.suffixes, self.legacy = kind, suffixes, legacy

    def get_metavar(self, param, ctx=None) -> str:
        return "FOLDER" if self.kind == "folder" else "FILE"

    def convert(self, value, param, ctx):
        path = Path(value)
        option = param.opts[0] if param is not None else "--out"
        if self.kind == "folder":
            if path.suffix.lower() in self.legacy:
                return path
            if path.exists() and not path.is_dir():
                self.fail(f"{path} is a file; {option} is a folder (several files go in it)")
            if path.suffix.lower() in FILE_SUFFIXES:
                self.fail(
                    f"{path} is a file name; {option} is a folder (several files go in it), "
                    f"e.g. {option} {path.with_suffix('')}"
                )
            return path
        if path.is_dir():
            example = path / ("out" + (self.suffixes or (".csv",))[0])
            self.fail(f"{path} is a folder; {option} is one file, e.g. {option} {example}")
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            self.fail(f"{path}: {option} must end in {', '.join(self.suffixes)}")
        return path


def out_option(kind: str, text: str, *, suffixes=(), legacy=(), required=False, name="--out"):
    """``--out`` (or another output option): ``kind`` "folder" or "file"; the help opens
    with which it is ("Folder ..."/"File ...") followed by ``text``."""
    return click.option(
        name,
        type=OutPath(kind, tuple(suffixes), tuple(legacy)),
        default=None,
        required=required,
        help=f"{'Folder' if kind == 'folder' else 'File'} {text}",
    )


force_option = click.option(
    "--force",
    is_flag=True,
    help="Overwrite existing outputs (without it an existing output file is kept and the "
    "command stops with exit code 2).",
)


def refuse_overwrite(paths, force: bool, option: str = "--out") -> None:
    """Stop (exit 2, one line) before any work when an output in ``paths`` exists and
    ``--force`` was not given; the old files stay as they are."""
    if force:
        return
    existing = [Path(p) for p in paths if p is not None and Path(p).exists()]
    if existing:
        n = len(existing) - 1
        more = f" (and {n} more output{'s' if n > 1 else ''})" if n else ""
        raise InputError(
            f"{existing[0]} exists{more}; add --force to overwrite, or choose another {option}"
        )


def refuse_overwrite_in(folder: Path, names, force: bool, option: str = "--out") -> None:
    """:func:`refuse_overwrite` for the files ``names`` a command writes into ``folder``."""
    refuse_overwrite([Path(folder) / n for n in names], force, option)


# ---- results on screen: --format table|json|csv and --csv-dialect -----------------------------

csv_dialect_option = click.option(
    "--csv-dialect",
    type=click.Choice(["comma", "semicolon"]),
    default="comma",
    show_default=True,
    help="CSV written or printed: comma (',' between fields, '1.5') or semicolon (';' and "
    "the decimal comma '1,5', what a Danish or other European Excel opens).",
)

_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Results on screen: a table to read, JSON, or CSV (tidy rows, one header).",
)


def format_option(func):
    """``--format table|json|csv`` and ``--csv-dialect`` (keywords ``fmt``, ``csv_dialect``);
    print with :func:`emit`."""
    return _format(csv_dialect_option(func))


def tidy_frame(rows):
    """A DataFrame of ``rows`` (a DataFrame, a list of records or one record): nested records
    flattened to dotted columns (``design_priors.icc``), lists of values joined by '; '."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, dict):
        rows = [rows]
    return pd.DataFrame([_flatten(r) for r in rows])


def _flatten(record: dict, prefix: str = "") -> dict:
    import json

    from trialsim.files import json_default

    out: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            if all(isinstance(v, str | int | float | bool) or v is None for v in value):
                out[name] = "; ".join("" if v is None else str(v) for v in value)
            else:
                out[name] = json.dumps(value, default=json_default)
        else:
            out[name] = value
    return out


def emit(fmt: str, *, text, record, rows, csv_dialect: str = "comma") -> None:
    """Print a command's results as ``--format`` says: ``text`` (a string, or a function that
    prints or returns it), the JSON ``record``, or ``rows`` as tidy CSV (:func:`tidy_frame`)
    in ``csv_dialect`` on stdout."""
    if fmt == "json":
        echo_json(record)
    elif fmt == "csv":
        from trialsim.files import csv_text

        frame = tidy_frame(rows() if callable(rows) else rows)
        click.echo(csv_text(frame, dialect=csv_dialect), nl=False)
    else:
        shown = text() if callable(text) else text
        if shown is not None:
            click.echo(shown)
