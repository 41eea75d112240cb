"""Column mapping: from a file's own column names and arm labels to the schema of DESIGN.md §6.

``--map psp=PSP_total,arm=gruppe,municipality=Kommune`` says "the schema column ``psp`` is the
file's column ``PSP_total``". Two extra keys name arm *labels*: ``treatment=SFT`` and
``control=Kontrol`` say which values of the arm column mean what. Common labels are
recognised without a mapping, in English and Danish (case and spaces ignored):

* treatment: treatment, intervention, sft, behandling, indsats, interventionsgruppe, 1
* control: control, kontrol, kontrolgruppe, usual care, sædvanlig indsats, 0

Columns already named as in the schema need no mapping; the match ignores case
(``PSP`` is ``psp``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import pandas as pd

OUTCOMES = ("psp", "mhrm", "who5", "eq5d", "support_hours", "employed")
PERSON_COLUMNS = (
    "participant",
    "municipality",
    "arm",
    "group",
    "trainer",
    "cohort",
    "period",
    "sessions_offered",
    "sessions_attended",
)
VISIT_COLUMNS = ("visit", "month", "assessor_blinded")
SCHEMA_COLUMNS = ("rep", *PERSON_COLUMNS, *VISIT_COLUMNS, *OUTCOMES)
REQUIRED = ("participant", "municipality", "arm", "group", "visit")
ARM_KEYS = ("treatment", "control")

ARM_SYNONYMS = {
    "treatment": (
        "treatment",
        "treated",
        "intervention",
        "sft",
        "behandling",
        "indsats",
        "interventionsgruppe",
        "interventionsgruppen",
        "1",
    ),
    "control": (
        "control",
        "kontrol",
        "kontrolgruppe",
        "kontrolgruppen",
        "usual care",
        "sædvanlig indsats",
        "saedvanlig indsats",
        "0",
    ),
}

# Danish (and common) names a real export may use, for "did you mean --map ..." hints.
HINTS = {
    "participant": ("deltager", "deltagerid", "id", "løbenr", "lbnr", "borger", "person"),
    "municipality": ("kommune", "site", "center"),
    "arm": ("gruppe", "randomisering", "allokering", "arm", "behandlingsgruppe"),
    "group": ("hold", "sfthold", "sft_hold", "holdnr", "team"),
    "trainer": ("træner", "traener", "underviser", "instruktør"),
    "visit": ("måling", "maaling", "tidspunkt", "besøg", "runde", "time"),
    "sessions_offered": ("tilbudt", "sessioner", "moeder_tilbudt", "møder_tilbudt"),
    "sessions_attended": ("fremmøde", "fremmoede", "deltaget", "moeder", "møder"),
    "assessor_blinded": ("blindet", "blind"),
}


@dataclass(frozen=True)
class ColumnMap:
    """Schema column -> file column, and arm label -> ``treatment``/``control``."""

    columns: dict[str, str] = field(default_factory=dict)
    arm_labels: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.columns or self.arm_labels)


def is_wide_name(name: str) -> bool:
    """True for a wide-layout outcome column such as ``psp_0`` or ``psp_baseline``."""
    return any(name.startswith(f"{o}_") and len(name) > len(o) + 1 for o in OUTCOMES)


def parse_mapping(items: str | tuple[str, ...] | list[str] | None) -> ColumnMap:
    """Parse ``target=source`` pairs (comma-separated, the option repeatable).

    >>> parse_mapping("psp=PSP_total,arm=gruppe,treatment=SFT").columns
    {'psp': 'PSP_total', 'arm': 'gruppe'}
    """
    if items is None:
        return ColumnMap()
    if isinstance(items, str):
        items = (items,)
    columns: dict[str, str] = {}
    labels: dict[str, str] = {}
    for item in items:
        for pair in (p for p in re.split(r",(?=[^,=]+=)", item) if p.strip()):
            target, sep, source = pair.partition("=")
            target, source = target.strip(), source.strip()
            if not sep or not target or not source:
                raise ValueError(
                    f"--map {pair!r}: expected target=source, e.g. --map psp=PSP_total,arm=gruppe"
                )
            if target in ARM_KEYS:
                labels[source.casefold()] = target
                continue
            if target not in SCHEMA_COLUMNS and not is_wide_name(target):
                close = difflib.get_close_matches(target, SCHEMA_COLUMNS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"--map {pair!r}: unknown schema column {target!r}{hint}; targets are "
                    f"{', '.join(SCHEMA_COLUMNS)}, wide outcome columns like psp_0, or the arm "
                    "labels treatment=LABEL and control=LABEL"
                )
            if target in columns and columns[target] != source:
                raise ValueError(
                    f"--map: {target!r} is mapped twice ({columns[target]!r}, {source!r})"
                )
            columns[target] = source
    return ColumnMap(columns, labels)


def apply_mapping(
    frame: pd.DataFrame, cmap: ColumnMap, *, source: str
) -> tuple[pd.DataFrame, dict]:
    """Rename the file's columns to schema names.

    Returns the renamed frame and ``{schema name: file name}`` for the renamed columns (to
    report problems under the name the user sees). Mapped columns must exist; schema columns
    differing only in case are renamed too.
    """
    present = [c for c in frame.columns if not c.startswith("_")]
    rename: dict[str, str] = {}
    for target, col in cmap.columns.items():
        if col not in frame.columns:
            folded = {c.casefold(): c for c in present}
            if col.casefold() in folded:
                col = folded[col.casefold()]
            else:
                close = difflib.get_close_matches(col, present, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"{source}: --map {target}={col}: the file has no column {col!r}{hint}"
                )
        rename[col] = target
    taken = set(rename.values())
    for col in present:
        key = col.casefold()
        if col in rename or col in SCHEMA_COLUMNS:
            continue
        if (key in SCHEMA_COLUMNS or is_wide_name(key)) and key not in taken:
            rename[col] = key
            taken.add(key)
    clash = [c for c in present if c in taken and c not in rename]
    if clash:
        raise ValueError(
            f"{source}: column {clash[0]!r} exists and another column is mapped to it; "
            "map only one column to each schema name"
        )
    return frame.rename(columns=rename), {new: old for old, new in rename.items() if new != old}


def normalise_arm(values: pd.Series, labels: dict[str, str]) -> pd.Series:
    """Arm labels to ``treatment``/``control``; unknown labels are kept (validate reports them)."""
    known = {s: arm for arm, names in ARM_SYNONYMS.items() for s in names}
    known.update(labels)

    def one(value):
        if value is None or (isinstance(value, float) and value != value):
            return None
        text = str(value).strip()
        if re.fullmatch(r"[01]\.0", text):
            text = text[0]
        return known.get(text.casefold(), text)

    uniques = values.dropna().unique()
    return values.map({u: one(u) for u in uniques})


def suggest_column(wanted: str, columns: list[str]) -> str | None:
    """The file column most likely meant for schema column ``wanted`` (or None)."""
    free = [c for c in columns if not c.startswith("_") and c not in SCHEMA_COLUMNS]
    folded = {c.casefold().replace(" ", "_"): c for c in free}
    for hint in HINTS.get(wanted, ()):
        if hint in folded:
            return folded[hint]
    close = difflib.get_close_matches(wanted, list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None
