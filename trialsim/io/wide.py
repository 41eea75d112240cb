"""Wide files (one row per person, a column per outcome and visit) to the long schema.

A wide outcome column is ``<outcome>_<visit>`` after mapping, e.g. ``psp_0``, ``psp_1``,
``who5_t2``, ``psp_baseline``. The visit part is a number (optionally after ``t``, ``v`` or
``visit``) or a word: baseline/base/bl/pre/start/før (first), post/end/eot/slut (end of
treatment), followup/fu/opfølgning/opf (later follow-up). Visits are numbered 0, 1, 2, ...
in that order. Other columns (participant, municipality, arm, group, sessions, ...) are per
person and repeated on every visit row. A file's own names are mapped first, e.g.
``--map psp_0=PSP_baseline,psp_1=PSP_slut``.
"""

from __future__ import annotations

import re

import pandas as pd

from trialsim.io.mapping import OUTCOMES

_WORDS = {
    0: ("baseline", "base", "bl", "pre", "start", "før", "foer", "for"),
    1: ("post", "end", "eot", "slut", "afslutning"),
    2: ("followup", "follow_up", "fu", "opfølgning", "opfoelgning", "opf"),
}
_NUMBER = re.compile(r"^(?:t|v|visit|m|uge)?(\d+)$")
_PATTERN = re.compile(rf"^({'|'.join(sorted(OUTCOMES, key=len, reverse=True))})_(.+)$")


def visit_key(token: str) -> float | None:
    """Order key of a visit suffix (``"0"`` -> 0, ``"baseline"`` -> 0, ``"fu"`` -> 2)."""
    token = token.casefold()
    match = _NUMBER.match(token)
    if match:
        return float(match.group(1))
    for key, words in _WORDS.items():
        if token in words:
            return key - 0.5 if key else -1.0  # words sort around the numbers 0, 1, 2
    return None


def wide_columns(columns) -> dict[str, tuple[str, str]]:
    """``{column: (outcome, visit suffix)}`` for the wide outcome columns among ``columns``."""
    found = {}
    for col in columns:
        match = _PATTERN.match(str(col))
        if match and visit_key(match.group(2)) is not None:
            found[col] = (match.group(1), match.group(2))
    return found


def looks_wide(frame: pd.DataFrame) -> bool:
    """No ``visit`` column, and some outcome measured under two or more visit suffixes."""
    if "visit" in frame.columns:
        return False
    per_outcome: dict[str, int] = {}
    for outcome, _ in wide_columns(frame.columns).values():
        per_outcome[outcome] = per_outcome.get(outcome, 0) + 1
    return any(n >= 2 for n in per_outcome.values())


def wide_to_long(frame: pd.DataFrame, *, source: str) -> tuple[pd.DataFrame, dict]:
    """Long table (one row per person and visit) from a wide one.

    Returns the long frame (rows ordered by person then visit, ``_row`` the wide row) and
    ``{(outcome, visit): wide column name}`` for reporting problems under the user's names.
    """
    found = wide_columns(frame.columns)
    if not found:
        raise ValueError(
            f"{source}: --wide given but no column looks like <outcome>_<visit> (e.g. psp_0, "
            f"psp_1); outcomes are {', '.join(OUTCOMES)}; rename with --map psp_0=COLUMN"
        )
    if "visit" in frame.columns:
        raise ValueError(f"{source}: a wide file has no 'visit' column; drop --wide")
    suffixes = sorted({s for _, s in found.values()}, key=lambda s: (visit_key(s), s))
    keys = [visit_key(s) for s in suffixes]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"{source}: wide visit suffixes {suffixes} name the same visit twice; rename "
            "them with --map"
        )
    visit_of = {s: i for i, s in enumerate(suffixes)}
    person = frame.drop(columns=list(found))
    parts = []
    names: dict[tuple[str, int], str] = {}
    for suffix, visit in visit_of.items():
        part = person.copy()
        part.insert(1, "visit", visit)
        for col, (outcome, s) in found.items():
            if s == suffix:
                part[outcome] = frame[col].to_numpy()
                names[(outcome, visit)] = col
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    outcomes = sorted({o for o, _ in found.values()}, key=OUTCOMES.index)
    for o in outcomes:  # an outcome missing at some visit is all-missing there
        if o not in long:
            long[o] = float("nan")
    order = long.sort_values(["_row", "visit"], kind="stable").index
    return long.loc[order].reset_index(drop=True), names
