"""Read, map, reshape and check a trial-data file: the pipeline behind ``read_trial_data``.

    file --read_table--> raw table --apply_mapping--> schema names --wide_to_long--> long
         --normalise arms--> check_long_frame --> clean long table (or the problems)

Real data (no ``rep`` column) may omit the rows of visits a participant missed; they are
added back with missing outcomes, so every participant has every visit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from trialsim.io.checks import Problem, check_long_frame
from trialsim.io.mapping import (
    PERSON_COLUMNS,
    ColumnMap,
    apply_mapping,
    normalise_arm,
    parse_mapping,
)
from trialsim.io.readers import ROW, read_table
from trialsim.io.wide import looks_wide, wide_to_long

# person-level columns other than the participant id itself
PERSON_LEVEL = PERSON_COLUMNS[1:]


@dataclass(frozen=True)
class LoadedTable:
    """The long table, the problems found, and how it was read."""

    frame: pd.DataFrame
    problems: list[Problem]
    source: str
    wide: bool
    names: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_lines(self) -> list[str]:
        return [p.line(self.source) for p in self.problems]


class DataProblems(ValueError):
    """A data file with problems; ``str()`` is the first line plus a count of the rest."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        more = (
            f" (and {len(lines) - 1} more problems: run 'trialsim validate')"
            if len(lines) > 1
            else ""
        )
        super().__init__(lines[0] + more)


def check_trial_file(
    path: str | Path,
    mapping: ColumnMap | str | tuple[str, ...] | None = None,
    wide: bool | None = None,
) -> LoadedTable:
    """Read and check a trial-data file without raising on data problems.

    Parameters
    ----------
    path : CSV (any dialect, see :mod:`trialsim.io.readers`), Parquet, .xlsx, .dta or .sav.
    mapping : ``--map`` text(s) or a :class:`ColumnMap`: schema column = file column.
    wide : True for one row per person with ``<outcome>_<visit>`` columns, False for long,
        None to detect (wide when there is no ``visit`` column but e.g. ``psp_0``, ``psp_1``).

    Raises ``ValueError`` only when the file cannot be read or the mapping does not fit it.
    """
    source = str(path)
    cmap = mapping if isinstance(mapping, ColumnMap) else parse_mapping(mapping)
    raw = read_table(path)
    frame, names = apply_mapping(raw, cmap, source=source)
    is_wide = looks_wide(frame) if wide is None else wide
    wide_names: dict = {}
    if is_wide:
        frame, wide_names = wide_to_long(frame, source=source)
    if "arm" in frame:
        frame["arm"] = normalise_arm(frame["arm"], cmap.arm_labels)
    frame, problems = check_long_frame(frame, names=names, wide_names=wide_names)
    if not problems and "rep" not in frame:
        frame = complete_visits(frame)
    return LoadedTable(frame, problems, source, is_wide, names)


def load_trial_frame(
    path: str | Path,
    mapping: ColumnMap | str | tuple[str, ...] | None = None,
    wide: bool | None = None,
) -> pd.DataFrame:
    """The checked long table of a trial-data file; raises :class:`DataProblems` if any.

    Example
    -------
    >>> frame = load_trial_frame(  # doctest: +SKIP
    ...     "scenarios/data/sft-example.csv",
    ...     "participant=deltager,municipality=kommune,arm=gruppe,group=hold",
    ... )
    """
    table = check_trial_file(path, mapping, wide)
    if table.problems:
        raise DataProblems(table.problem_lines())
    return table.frame.drop(columns=[ROW])


def complete_visits(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the missing (participant, visit) rows of real data with empty outcomes."""
    people = frame["participant"].drop_duplicates()
    visits = pd.Series(sorted(frame["visit"].dropna().unique()), name="visit")
    if len(frame) == len(people) * len(visits):
        return frame
    full = pd.MultiIndex.from_product([people, visits], names=["participant", "visit"])
    out = frame.set_index(["participant", "visit"]).reindex(full).reset_index()
    person_cols = [c for c in PERSON_LEVEL if c in out]
    out[person_cols] = out.groupby("participant", sort=False)[person_cols].transform("first")
    return out
