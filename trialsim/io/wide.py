"""Wide files (one row per person, a column per outcome and visit) to the long layout.

A wide outcome column is ``<stem><sep><visit>``: any stem, a separator ``_``, ``.``, `` `` or
``-``, and a visit label, e.g. ``psp_0``, ``bdi.pre``, ``bdi.8m``, ``PSP 9 mdr``,
``weight_post``. Stems are found, not listed: a stem is the common prefix of two or more
columns with readable visit labels. Visit labels:

* ``pre``, ``baseline``, ``before``, ``før``, ... : the baseline (month 0);
* a number with a unit: ``2m``, ``9 mdr``, ``6mo``, ``12 months`` (months), ``8w``, ``uge 12``,
  ``12 weeks`` (months = weeks * 12 / 52), ``1y`` (12 months);
* a bare number (``0``, ``1``, ``t2``, ``visit3``): the visit index (0 = baseline), its month
  the index unless ``--visit-months LABEL=MONTH`` says otherwise;
* ``post``, ``end``, ``slut``, ... (after baseline) and ``followup``, ``fu``, ``opfølgning``
  (after that): month unknown, taken as the visit index.

Every label's month may be set with ``--visit-months LABEL=MONTH``. A column of a stem whose
label cannot be read (``psp_1x``, ``psp_1.5``), a negative visit (``psp_-1``) and two labels
naming one visit (``psp_0`` and ``psp_baseline``) are problems. Other columns are per person
and repeated on every visit row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

SEPARATORS = "_. -"

_BASELINE = ("baseline", "base", "bl", "pre", "before", "start", "før", "foer", "screening")
_POST = ("post", "end", "eot", "slut", "afslutning", "after", "efter")
_FOLLOWUP = ("followup", "follow_up", "follow-up", "follow up", "fu", "opfølgning", "opf")
_UNITS = {
    **dict.fromkeys(
        (
            "m",
            "mo",
            "mon",
            "mos",
            "mth",
            "mths",
            "month",
            "months",
            "md",
            "mdr",
            "måned",
            "måneder",
            "maaned",
            "maaneder",
        ),
        1.0,
    ),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks", "uge", "uger"), 12.0 / 52.0),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years", "år", "aar"), 12.0),
    **dict.fromkeys(("d", "day", "days", "dag", "dage"), 12.0 / 365.25),
}
_NUM = r"([-+]?\d+(?:[.,]\d+)?)"
_UNIT = "(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + ")"
_INDEX = re.compile(r"^(?:(?:t|v|visit|time|wave)\s*[_.\- ]?\s*)?([-+]?\d+)$")
_NUM_UNIT = re.compile(rf"^{_NUM}\s*[_.\- ]?\s*{_UNIT}$")
_UNIT_NUM = re.compile(rf"^{_UNIT}\s*[_.\- ]?\s*{_NUM}$")


@dataclass(frozen=True)
class VisitLabel:
    """A parsed visit label: ``key`` orders visits (equal keys: the same visit); ``month``
    is None when unknown (post/follow-up without a number)."""

    text: str
    key: tuple[float, int]
    month: float | None
    negative: bool = False
    baseline: bool = False


def parse_visit(token: str, months: dict[str, float] | None = None) -> VisitLabel | None:
    """A visit label (see module docstring), or None when it cannot be read."""
    text = " ".join(token.strip().casefold().split())
    if months and text in months:
        m = float(months[text])
        return VisitLabel(text, (m, 0), m, m < 0, m == 0)
    if text in _BASELINE:
        return VisitLabel(text, (0.0, 0), 0.0, baseline=True)
    if text in _POST:
        return VisitLabel(text, (0.0, 1), None)
    if text in _FOLLOWUP:
        return VisitLabel(text, (0.0, 2), None)
    match = _INDEX.match(text)
    if match:
        k = float(int(match.group(1)))
        return VisitLabel(text, (k, 0), k, k < 0, k == 0)
    for pattern, num, unit in ((_NUM_UNIT, 1, 2), (_UNIT_NUM, 2, 1)):
        match = pattern.match(text)
        if match:
            m = float(match.group(num).replace(",", ".")) * _UNITS[match.group(unit)]
            m = round(m, 6)
            return VisitLabel(text, (m, 0), m, m < 0, m == 0)
    return None


def _splits(name: str):
    """(stem, label) for every separator in ``name``."""
    for i, ch in enumerate(name):
        if ch in SEPARATORS and i > 0 and i < len(name) - 1:
            stem = name[:i].rstrip(SEPARATORS)
            if stem:
                yield stem, name[i + 1 :]


@dataclass
class WideColumns:
    """Wide columns found: ``{column: (stem, label)}``, and unreadable columns of a stem."""

    columns: dict[str, tuple[str, VisitLabel]]
    unreadable: dict[str, tuple[str, str]]  # column -> (stem, label text)

    @property
    def stems(self) -> list[str]:
        seen: dict[str, None] = {}
        for stem, _ in self.columns.values():
            seen.setdefault(stem, None)
        return list(seen)


def find_wide_columns(columns, months: dict[str, float] | None = None) -> WideColumns:
    """Stems with two or more readable visit columns (see module docstring)."""
    candidates: dict[str, list[tuple[str, VisitLabel]]] = {}
    count: dict[str, set] = {}
    for col in columns:
        for stem, label in _splits(str(col)):
            parsed = parse_visit(label, months)
            if parsed is not None:
                key = stem.casefold()
                candidates.setdefault(col, []).append((key, parsed))
                count.setdefault(key, set()).add(col)
    found: dict[str, tuple[str, VisitLabel]] = {}
    for col, options in candidates.items():
        good = [(s, p) for s, p in options if len(count[s]) >= 2]
        if good:
            found[col] = min(good, key=lambda sp: len(sp[0]))  # the longest label
    stems = {s for s, _ in found.values()}
    unreadable = {}
    for col in columns:
        if col in found:
            continue
        for stem, label in _splits(str(col)):
            if stem.casefold() in stems:
                unreadable[col] = (stem.casefold(), label)
                break
    return WideColumns(found, unreadable)


def visit_plan(wide: WideColumns) -> tuple[list[tuple[float, int]], list[float], bool, list[str]]:
    """Visit keys in order, their months, whether visit 0 is a baseline, and notes."""
    labels: dict[tuple[float, int], VisitLabel] = {}
    for _, label in wide.columns.values():
        if not label.negative:
            labels.setdefault(label.key, label)
    keys = sorted(labels)
    months, notes = [], []
    for i, key in enumerate(keys):
        label = labels[key]
        if label.month is None:
            months.append(float(i))
            notes.append(
                f"visit {label.text!r}: month unknown, taken as {i} (the visit number); say it "
                f"with --visit-months {label.text}=MONTH"
            )
        else:
            months.append(label.month)
    baseline = bool(keys) and labels[keys[0]].baseline
    return keys, months, baseline, notes


def wide_to_long(frame: pd.DataFrame, wide: WideColumns, keys) -> tuple[pd.DataFrame, dict]:
    """Long table (one row per person and visit; ``visit`` 0, 1, ...) from a wide one.

    Returns the long frame (rows ordered by person then visit, ``_row`` the wide row) and
    ``{(outcome, visit): wide column name}`` for reporting problems under the user's names.
    """
    visit_of = {k: i for i, k in enumerate(keys)}
    drop = list(wide.columns) + list(wide.unreadable)
    person = frame.drop(columns=drop)
    parts = []
    names: dict[tuple[str, int], str] = {}
    for key, visit in visit_of.items():
        part = person.copy()
        part["visit"] = visit
        for col, (stem, label) in wide.columns.items():
            if label.key == key and not label.negative:
                part[stem] = frame[col].to_numpy()
                names[(stem, visit)] = col
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    for stem in wide.stems:  # an outcome missing at some visit is all-missing there
        if stem not in long:
            long[stem] = float("nan")
    order = long.sort_values(["_row", "visit"], kind="stable").index
    return long.loc[order].reset_index(drop=True), names
