"""Schema and design checks of a long trial-data table (``trialsim validate DATA``).

Each problem is one :class:`Problem` with the row a spreadsheet shows and the column under
the file's own name. All problems are collected (not just the first); a check that finds the
same problem on many rows reports the first :data:`MAX_PER_CHECK` rows and then one line
counting the rest. Checks that need a clean column (e.g. "group spans arms" needs valid arms)
are skipped while that column has problems of its own.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trialsim.io.mapping import OUTCOMES, REQUIRED, SCHEMA_COLUMNS, suggest_column
from trialsim.io.readers import ROW

MAX_PER_CHECK = 10

# Plausible ranges of the known outcomes (scale definitions in scenarios/sft-19m.toml).
OUTCOME_RANGES = {
    "psp": (1.0, 100.0),
    "mhrm": (0.0, 120.0),
    "who5": (0.0, 100.0),
    "eq5d": (-0.624, 1.0),
    "support_hours": (0.0, np.inf),
    "employed": (0.0, 1.0),
}
_BOOL_TEXT = {
    "1": True,
    "0": False,
    "true": True,
    "false": False,
    "ja": True,
    "nej": False,
    "yes": True,
    "no": False,
    "1.0": True,
    "0.0": False,
}


@dataclass(frozen=True)
class Problem:
    """One problem: where (row, column) and what, with how to fix it."""

    message: str
    row: int | None = None
    column: str | None = None
    map_hint: str | None = None  # "schema=column" that would fix it

    def line(self, source: str) -> str:
        where = [source]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.message}"


class _Collector:
    def __init__(self, names: dict, wide_names: dict):
        self.problems: list[Problem] = []
        self.names = names
        self.wide_names = wide_names
        self.bad_columns: set[str] = set()

    def column_name(self, column: str, visit=None) -> str:
        if visit is not None and (column, visit) in self.wide_names:
            return self.wide_names[(column, visit)]
        return self.names.get(column, column)

    def add(self, message, row=None, column=None, visit=None):
        name = None if column is None else self.column_name(column, visit)
        self.problems.append(Problem(message, None if row is None else int(row), name))

    def rows(self, frame: pd.DataFrame, bad: np.ndarray, column: str, message) -> None:
        """One problem per flagged row (capped); ``message`` may be a function of the row."""
        bad = np.asarray(bad, dtype=bool)
        if not bad.any():
            return
        self.bad_columns.add(column)
        sub = frame.loc[bad]
        visits = sub["visit"].to_numpy() if "visit" in sub else [None] * len(sub)
        for (_, record), visit in zip(sub.head(MAX_PER_CHECK).iterrows(), visits, strict=False):
            text = message(record) if callable(message) else message
            self.add(text, record[ROW], column, _visit_int(visit))
        if len(sub) > MAX_PER_CHECK:
            self.add(
                f"... and {len(sub) - MAX_PER_CHECK} more rows with the same problem", None, column
            )


def _fmt(value) -> str:
    """A cell as the user typed it: 12 not 12.0, text quoted."""
    if isinstance(value, str):
        return repr(value)
    try:
        if float(value) == int(float(value)):
            return str(int(float(value)))
    except (TypeError, ValueError, OverflowError):
        pass
    return str(value)


def _visit_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def check_long_frame(
    frame: pd.DataFrame, *, names: dict | None = None, wide_names: dict | None = None
) -> tuple[pd.DataFrame, list[Problem]]:
    """Check a long table; return it with numeric columns converted, and the problems found.

    ``names`` maps schema names to the file's names, ``wide_names`` (outcome, visit) to the
    wide column, so messages use what the user sees.
    """
    c = _Collector(names or {}, wide_names or {})
    frame = frame.copy()
    columns = [col for col in frame.columns if not col.startswith("_")]
    for col in REQUIRED:
        if col not in frame.columns:
            guess = suggest_column(col, columns)
            fix = f"map it with --map {col}={guess}" if guess else f"add a column named {col!r}"
            c.problems.append(
                Problem(
                    f"required column {col!r} is missing; {fix} (schema: DESIGN.md §6)",
                    map_hint=f"{col}={guess}" if guess else None,
                )
            )
            c.bad_columns.add(col)
    suggested = {suggest_column(col, columns) for col in REQUIRED if col not in frame.columns}
    for col in columns:
        if col in SCHEMA_COLUMNS or col in suggested:
            continue
        free = [s for s in SCHEMA_COLUMNS if s not in frame.columns]
        close = difflib.get_close_matches(col.casefold(), free, n=1, cutoff=0.85)
        if close:
            c.add(
                f"column {col!r} is not in the schema and is ignored; did you mean "
                f"{close[0]!r}? Rename it or use --map {close[0]}={col}"
            )
    outcomes = [o for o in OUTCOMES if o in frame.columns]
    if not outcomes:
        c.add(f"no outcome column; name at least one of {', '.join(OUTCOMES)} (or use --map)")

    _check_types(frame, c, outcomes)
    _check_duplicates(frame, c)
    _check_sessions(frame, c)
    _check_person_constant(frame, c)
    _check_design(frame, c, outcomes)
    return frame, c.problems


def _numeric(frame, c, col, *, integer=False, lower=None, upper=None, what="a number"):
    raw = frame[col]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    present = raw.notna().to_numpy()
    not_number = present & ~np.isfinite(values.to_numpy())
    c.rows(frame, not_number, col, lambda r: f"{_fmt(r[col])} is not {what}")
    ok = np.isfinite(values.to_numpy())
    if integer:
        c.rows(
            frame,
            ok & (values.to_numpy() != np.round(values.to_numpy())),
            col,
            lambda r: f"{_fmt(r[col])} is not a whole number",
        )
    v = values.to_numpy()
    if lower is not None or upper is not None:
        lo = -np.inf if lower is None else lower
        hi = np.inf if upper is None else upper
        c.rows(
            frame,
            ok & ((v < lo) | (v > hi)),
            col,
            lambda r: f"{r[col]} is outside the scale [{lo:g}, {hi:g}]",
        )
    frame[col] = values


def _check_types(frame, c, outcomes):
    if "participant" in frame:
        c.rows(frame, frame["participant"].isna().to_numpy(), "participant", "participant is empty")
    if "municipality" in frame:
        c.rows(
            frame, frame["municipality"].isna().to_numpy(), "municipality", "municipality is empty"
        )
    if "visit" in frame:
        _numeric(frame, c, "visit", integer=True, lower=0, what="a visit number (0 = baseline)")
        c.rows(frame, frame["visit"].isna().to_numpy(), "visit", "visit is empty")
    if "rep" in frame:
        _numeric(frame, c, "rep", integer=True, lower=0, what="a replicate number")
    if "arm" in frame:
        arm = frame["arm"]
        c.rows(frame, arm.isna().to_numpy(), "arm", "arm is empty")
        unknown = arm.notna() & ~arm.isin(["control", "treatment"])
        c.rows(
            frame,
            unknown.to_numpy(),
            "arm",
            lambda r: (
                f"unknown arm label {r['arm']!r}; expected control or treatment, or say what it "
                f"means with --map treatment={r['arm']} (or control={r['arm']})"
            ),
        )
    for col in ("month", "period", "sessions_offered", "sessions_attended"):
        if col in frame:
            _numeric(frame, c, col, integer=col != "month", lower=0)
    for o in outcomes:
        lo, hi = OUTCOME_RANGES[o]
        _numeric(frame, c, o, lower=lo, upper=hi)
        if o == "employed":
            v = frame[o].to_numpy()
            c.rows(frame, np.isfinite(v) & (v != 0) & (v != 1), o, "employed must be 0 or 1")
    if "assessor_blinded" in frame:
        raw = frame["assessor_blinded"]
        uniques = raw.dropna().unique()
        text = raw.map({u: str(u).strip().casefold() for u in uniques})
        bad = text.notna() & ~text.isin(list(_BOOL_TEXT))
        c.rows(
            frame,
            bad.to_numpy(),
            "assessor_blinded",
            lambda r: f"{r['assessor_blinded']!r} is not yes/no (1/0, true/false, ja/nej)",
        )
        frame["assessor_blinded"] = text.map({t: float(b) for t, b in _BOOL_TEXT.items()})


def _check_duplicates(frame, c):
    keys = [k for k in ("rep", "participant", "visit") if k in frame]
    if "participant" not in keys or "visit" not in keys or {"participant", "visit"} & c.bad_columns:
        return
    dup = frame.duplicated(keys, keep="first").to_numpy()
    if dup.any():
        first_row = frame.groupby(keys, sort=False, dropna=False)[ROW].transform("first")
        frame_rows = first_row.to_numpy()
        c.rows(
            frame.assign(_first=frame_rows),
            dup,
            "visit",
            lambda r: (
                f"participant {_fmt(r['participant'])} has visit {r['visit']:g} twice (also row "
                f"{r['_first']}); keep one row per participant and visit"
            ),
        )


def _check_person_constant(frame, c):
    """Arm, municipality, group, ... must not change between a participant's visits."""
    if "participant" not in frame or "participant" in c.bad_columns:
        return
    keys = [k for k in ("rep", "participant") if k in frame]
    for col in (
        "arm",
        "municipality",
        "group",
        "trainer",
        "cohort",
        "period",
        "sessions_offered",
        "sessions_attended",
    ):
        if col not in frame or col in c.bad_columns:
            continue
        n_values = frame.groupby(keys, sort=False)[col].transform("nunique")
        changes = (n_values > 1).to_numpy()
        first = frame.groupby(keys, sort=False)[col].transform("first")
        bad = changes & (frame[col].astype(object).to_numpy() != first.astype(object).to_numpy())
        bad &= frame[col].notna().to_numpy()
        c.rows(
            frame,
            bad,
            col,
            lambda r, col=col: (
                f"participant {_fmt(r['participant'])} changes {col} between visits "
                f"({_fmt(r[col])}); it must be the same on every row of a participant"
            ),
        )


def _check_sessions(frame, c):
    if {"sessions_offered", "sessions_attended"} <= set(frame) and not (
        {"sessions_offered", "sessions_attended"} & c.bad_columns
    ):
        over = (frame["sessions_attended"] > frame["sessions_offered"]).to_numpy()
        c.rows(
            frame,
            over,
            "sessions_attended",
            lambda r: (
                f"attended {r['sessions_attended']:g} sessions but only "
                f"{r['sessions_offered']:g} were offered"
            ),
        )


def infer_design(frame: pd.DataFrame) -> str:
    """individual | cohort | municipality | stepped-wedge, as :func:`read_trial_data` infers."""
    if "period" in frame:
        return "stepped-wedge"
    if "cohort" in frame:
        return "cohort"
    share = (frame["arm"] == "treatment").groupby(frame["municipality"]).mean()
    return "municipality" if set(share.unique()) <= {0.0, 1.0} else "individual"


def _check_design(frame, c, outcomes):
    if not {"arm", "municipality", "participant"} <= set(frame):
        return
    # rows with a valid arm and municipality (the others are reported already)
    frame = frame[frame["arm"].isin(["control", "treatment"]) & frame["municipality"].notna()]
    arms = set(frame["arm"])
    if len(arms) < 2:
        only = next(iter(arms), "none")
        c.add(
            f"only one arm ({only}) in the data; a trial needs control and treatment rows",
            None,
            "arm",
        )
        return
    design = infer_design(frame)
    if "group" in frame and "group" not in c.bad_columns:
        has_group = frame["group"].notna().to_numpy()
        if design == "individual":
            c.rows(
                frame,
                has_group & (frame["arm"] == "control").to_numpy(),
                "group",
                lambda r: (
                    f"control participant {_fmt(r['participant'])} has group "
                    f"{_fmt(r['group'])}; under individual randomisation controls are not in "
                    "treatment groups (leave empty)"
                ),
            )
        grouped = frame[has_group]
        keys = ["rep", "group"] if "rep" in frame else ["group"]
        n_arms = grouped.groupby(keys)["arm"].transform("nunique")
        spans = grouped[(n_arms > 1).to_numpy()]
        for _, sub in spans.groupby(keys, sort=False):
            minority = sub["arm"].value_counts().index[-1]
            row = sub.loc[sub["arm"] == minority, ROW].iloc[0]
            c.add(
                f"group {_fmt(sub['group'].iloc[0])} spans both arms (first {minority} row here); "
                "a treatment group belongs to one arm",
                row,
                "group",
            )
        n_muni = grouped.groupby(keys)["municipality"].transform("nunique")
        for _, sub in grouped[(n_muni > 1).to_numpy()].groupby(keys, sort=False):
            first_muni = sub["municipality"].iloc[0]
            row = sub.loc[sub["municipality"] != first_muni, ROW].iloc[0]
            c.add(
                f"group {_fmt(sub['group'].iloc[0])} spans municipalities "
                f"({', '.join(map(str, sub['municipality'].unique()))}); if groups are numbered "
                "within each municipality, make the numbers unique (e.g. M1-1)",
                row,
                "group",
            )
    if "visit" in frame and "visit" not in c.bad_columns and outcomes:
        follow = frame["visit"] > 0
        measured = frame[outcomes].notna().any(axis=1)
        if not follow.any():
            c.add(
                "no follow-up rows (every visit is 0 = baseline); effects need follow-up",
                None,
                "visit",
            )
        elif not (follow & measured).any():
            c.add("no outcome is measured at any follow-up visit (visit > 0)", None, "visit")
