"""Checks of a long trial-data table (``trialsim validate DATA``).

Each problem is one :class:`Problem` with the row a spreadsheet shows and the column under
the file's own name. All problems are collected (not just the first); a check that finds the
same problem on many rows reports the first :data:`MAX_PER_CHECK` rows and then one line
counting the rest. Checks that need a clean column (e.g. "group spans arms" needs valid arms)
are skipped while that column has problems of its own.

Columns carry role names here (``participant``, ``arm``, ``site``, ``cluster``, ``group``,
...); outcomes and covariates their own. Nothing is range-checked unless its bounds were
declared (a scenario, ``--bounds``, or the type: binary 0/1, count >= 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trialsim.io.mapping import HINTS, PERSON_ROLES, suggest_column
from trialsim.io.readers import ROW

MAX_PER_CHECK = 10

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
    map_hint: str | None = None  # "role=column" that would fix it

    def line(self, source: str) -> str:
        where = [source]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.message}"


class Collector:
    """Problems found, under the names the user sees."""

    def __init__(self, names: dict | None = None, wide_names: dict | None = None):
        self.problems: list[Problem] = []
        self.names = names or {}
        self.wide_names = wide_names or {}
        self.bad_columns: set[str] = set()

    def column_name(self, column: str, visit=None) -> str:
        if visit is not None and (column, visit) in self.wide_names:
            return self.wide_names[(column, visit)]
        return self.names.get(column, column)

    def add(self, message, row=None, column=None, visit=None, map_hint=None):
        name = None if column is None else self.column_name(column, visit)
        self.problems.append(Problem(message, None if row is None else int(row), name, map_hint))

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


def fmt(value) -> str:
    """A cell as the user typed it: 12 not 12.0, text quoted."""
    if isinstance(value, str):
        return repr(value)
    try:
        if float(value) == int(float(value)):
            return str(int(float(value)))
    except (TypeError, ValueError, OverflowError):
        pass
    return str(value)


def who(value) -> str:
    """A participant id as the user typed it, unquoted."""
    text = fmt(value)
    return text[1:-1] if isinstance(value, str) else text


def _visit_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def numeric_share(values: pd.Series) -> float:
    """Share of a column's non-empty cells that are numbers (0 for an empty column)."""
    present = values.dropna()
    if present.empty:
        return 0.0
    if pd.api.types.is_numeric_dtype(present.dtype):
        return 1.0
    return float(np.isfinite(pd.to_numeric(present, errors="coerce").astype(float)).mean())


def check_long_frame(
    frame: pd.DataFrame,
    c: Collector,
    *,
    outcomes: dict,
    covariates: dict,
    site_name: str | None = None,
    cluster_name: str | None = None,
    visit_column: bool = True,
) -> pd.DataFrame:
    """Check a long table (role names); return it with numeric columns converted.

    ``outcomes`` name -> :class:`~trialsim.structure.OutcomeSpec` (bounds and type checked
    where declared); ``covariates`` name -> kind (``numeric``/``categorical``).
    """
    frame = frame.copy()
    labels = {"site": site_name or "site", "cluster": cluster_name or "cluster"}
    _check_types(frame, c, outcomes, covariates, labels)
    _check_duplicates(frame, c)
    _check_sessions(frame, c)
    _check_person_constant(frame, c, covariates, labels)
    _check_design(frame, c, outcomes, labels, visit_column)
    return frame


def _numeric(frame, c, col, *, integer=False, lower=None, upper=None, what="a number"):
    raw = frame[col]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    present = raw.notna().to_numpy()
    not_number = present & ~np.isfinite(values.to_numpy())
    c.rows(frame, not_number, col, lambda r: f"{fmt(r[col])} is not {what}")
    ok = np.isfinite(values.to_numpy())
    v = values.to_numpy()
    if integer:
        c.rows(
            frame,
            ok & (v != np.round(v)),
            col,
            lambda r: f"{fmt(r[col])} is not a whole number",
        )
    if lower is not None or upper is not None:
        lo = -np.inf if lower is None else lower
        hi = np.inf if upper is None else upper
        c.rows(
            frame,
            ok & ((v < lo) | (v > hi)),
            col,
            lambda r: f"{fmt(float(r[col]))} is outside the scale [{lo:g}, {hi:g}]",
        )
    frame[col] = values


def _check_types(frame, c, outcomes, covariates, labels):
    for col in ("participant", "site"):
        if col in frame:
            c.rows(
                frame,
                frame[col].isna().to_numpy(),
                col,
                f"{labels.get(col, col)} is empty; every row needs one",
            )
    if "visit" in frame:
        _numeric(frame, c, "visit", integer=True, lower=0, what="a visit number (0 = baseline)")
        c.rows(frame, frame["visit"].isna().to_numpy(), "visit", "visit is empty")
    if "rep" in frame:
        _numeric(frame, c, "rep", integer=True, lower=0, what="a replicate number")
    if "arm" in frame:
        c.rows(frame, frame["arm"].isna().to_numpy(), "arm", "arm is empty; every row needs one")
    for col in ("month", "period", "sessions_offered", "sessions_attended"):
        if col in frame:
            _numeric(frame, c, col, integer=col != "month", lower=0)
    for name, spec in outcomes.items():
        if name not in frame:
            continue
        lower, upper = spec.lower, spec.upper
        if spec.type == "count" and lower is None:
            lower = 0.0
        _numeric(frame, c, name, lower=lower, upper=upper, integer=spec.type == "count")
        if spec.type == "binary" and name not in c.bad_columns:
            v = frame[name].to_numpy()
            c.rows(
                frame,
                np.isfinite(v) & (v != 0) & (v != 1),
                name,
                lambda r, n=name: f"{fmt(r[n])}: a binary outcome must be 0 or 1",
            )
    for name, kind in covariates.items():
        if name in frame and kind == "numeric":
            _numeric(frame, c, name)
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
        c.rows(
            frame.assign(_first=first_row.to_numpy()),
            dup,
            "visit",
            lambda r: (
                f"participant {who(r['participant'])} has visit {r['visit']:g} twice (also row "
                f"{r['_first']}); keep one row per participant and visit"
            ),
        )


def _check_person_constant(frame, c, covariates, labels):
    """Arm, site, group, covariates, ... must not change between a participant's visits."""
    if "participant" not in frame or "participant" in c.bad_columns:
        return
    keys = [k for k in ("rep", "participant") if k in frame]
    before = set(c.bad_columns)  # a changing value is reported; other checks still run
    for col in (*PERSON_ROLES, *covariates):
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
                f"participant {who(r['participant'])} changes {labels.get(col, col)} between "
                f"visits ({fmt(r[col])}); it must be the same on every row of a participant"
            ),
        )
    c.bad_columns &= before | {"participant"}


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


def _spanning(frame, c, unit, across, message):
    """One problem per ``unit`` (group, cluster) whose rows hold several ``across`` values."""
    rows = frame[frame[unit].notna() & frame[across].notna()]
    keys = ["rep", unit] if "rep" in rows else [unit]
    n = rows.groupby(keys)[across].transform("nunique")
    for _, sub in rows[(n > 1).to_numpy()].groupby(keys, sort=False):
        minority = sub[across].value_counts().index[-1]
        row = sub.loc[sub[across] == minority, ROW].iloc[0]
        c.add(message(sub, minority), row, unit)


def _check_design(frame, c, outcomes, labels, visit_column):
    if "arm" not in frame or "arm" in c.bad_columns:
        return
    arms = frame["arm"].dropna().unique()
    if len(arms) < 2:
        only = arms[0] if len(arms) else "none"
        c.add(
            f"only one arm ({only}) in the data; a trial needs two or more arms",
            None,
            "arm",
        )
        return
    site = labels["site"]
    if "group" in frame and "group" not in c.bad_columns:
        _spanning(
            frame,
            c,
            "group",
            "arm",
            lambda sub, m: (
                f"group {who(sub['group'].iloc[0])} spans arms "
                f"({', '.join(map(str, sub['arm'].unique()))}; first {m} row here); a "
                "delivery group belongs to one arm: number groups uniquely across arms"
            ),
        )
        if "site" in frame and "site" not in c.bad_columns:
            _spanning(
                frame,
                c,
                "group",
                "site",
                lambda sub, m: (
                    f"group {who(sub['group'].iloc[0])} spans more than one {site} "
                    f"({', '.join(map(str, sub['site'].unique()))}); if groups are numbered "
                    f"within each {site}, make the numbers unique (e.g. M1-1)"
                ),
            )
    if "cluster" in frame and "cluster" not in c.bad_columns:
        cl = labels["cluster"]
        _spanning(
            frame,
            c,
            "cluster",
            "arm",
            lambda sub, m: (
                f"{cl} {who(sub['cluster'].iloc[0])} spans arms "
                f"({', '.join(map(str, sub['arm'].unique()))}; first {m} row here); a "
                f"randomised {cl} is in one arm: number {cl}s uniquely across {site}s"
            ),
        )
    if visit_column and "visit" in frame and "visit" not in c.bad_columns and outcomes:
        present = [o for o in outcomes if o in frame]
        follow = frame["visit"] > 0
        measured = frame[present].notna().any(axis=1) if present else follow & False
        if not follow.any():
            c.add(
                "no follow-up rows (every visit is 0 = baseline); effects need follow-up",
                None,
                "visit",
            )
        elif not (follow & measured).any():
            c.add("no outcome is measured at any follow-up visit (visit > 0)", None, "visit")


def missing_role(c: Collector, role: str, columns: list[str], what: str) -> None:
    """A required role has no column: say which column might be it."""
    guess = suggest_column(role, columns)
    fix = f"map it with --map {role}={guess}" if guess else f"add a column named {role!r}"
    c.problems.append(
        Problem(
            f"required column {role!r} is missing ({what}); {fix} (see trialsim validate --help)",
            map_hint=f"{role}={guess}" if guess else None,
        )
    )


__all__ = ["HINTS", "Collector", "Problem", "check_long_frame", "missing_role", "numeric_share"]
