"""Column roles: which of a file's columns is the participant, arm, site, cluster, ...

``--map participant=deltager,arm=gruppe,municipality=Kommune`` says "the role ``participant``
is the file's column ``deltager``". Roles (:data:`ROLES`): participant, arm, site, cluster,
group, trainer, period, visit, month, sessions_offered, sessions_attended, assessor_blinded,
rep. The site role may be given under the name the trial uses for it (municipality, school,
stratum, centre), which is kept as the structure's site name; the cluster role likewise
(cohort, class). Columns already named like a role need no mapping (case ignored).

Any other target renames a column: ``--map psp=PSP_total`` (an outcome), ``--map
psp_0=PSP_baseline`` (a wide column). Two keys name arm *labels* (the older syntax):
``control=Kontrol`` makes ``Kontrol`` the reference arm, relabelled ``control``, and
``treatment=SFT`` relabels ``SFT`` as ``treatment``.

The reference (control) arm is recognised among these labels (case and spaces ignored) when
``--reference`` is not given: control, kontrol, kontrolgruppe, usual care, sædvanlig
indsats, tau, treatment as usual, placebo, waitlist, 0.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import pandas as pd

from trialsim.errors import UserError

ROLES = (
    "participant",
    "arm",
    "site",
    "cluster",
    "group",
    "trainer",
    "period",
    "visit",
    "month",
    "sessions_offered",
    "sessions_attended",
    "assessor_blinded",
    "rep",
)
# the role ``site`` under the names trials use for it (the name is kept)
SITE_ALIASES = ("municipality", "school", "stratum", "centre", "center", "site")
# the role ``cluster`` under the names trials use for it
CLUSTER_ALIASES = ("cluster", "cohort", "class")
# an arm column under another common name (used when there is no ``arm`` column)
ARM_ALIASES = ("treatment", "treat", "allocation", "condition", "randomisation", "trt")
# columns written by the simulator's recruitment timeline: known, not read
RESERVED = ("enrolled_month", "waiting_months", "visit_date")
PERSON_ROLES = (
    "arm",
    "site",
    "cluster",
    "group",
    "trainer",
    "period",
    "sessions_offered",
    "sessions_attended",
)
ARM_KEYS = ("treatment", "control")
MAP_TARGETS = (*ROLES, *SITE_ALIASES[:-1], *CLUSTER_ALIASES[1:])

CONTROL_LABELS = (
    "control",
    "controls",
    "kontrol",
    "kontrolgruppe",
    "kontrolgruppen",
    "usual care",
    "sædvanlig indsats",
    "saedvanlig indsats",
    "tau",
    "treatment as usual",
    "placebo",
    "waitlist",
    "wait list",
    "wait-list",
    "waiting list",
    "0",
)

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
    """Target -> file column, and arm label (lower case) -> ``treatment``/``control``."""

    columns: dict[str, str] = field(default_factory=dict)
    arm_labels: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.columns or self.arm_labels)


def role_of(target: str) -> str | None:
    """The role a ``--map`` target or a column name stands for (``school`` -> ``site``)."""
    t = target.casefold()
    if t in ROLES:
        return t
    if t in SITE_ALIASES:
        return "site"
    if t in CLUSTER_ALIASES:
        return "cluster"
    return None


def parse_mapping(items: str | tuple[str, ...] | list[str] | None) -> ColumnMap:
    """Parse ``target=source`` pairs (comma-separated, the option repeatable).

    >>> parse_mapping("psp=PSP_total,arm=gruppe,treatment=SFT").columns
    {'psp': 'PSP_total', 'arm': 'gruppe'}
    """
    if items is None:
        return ColumnMap()
    if isinstance(items, ColumnMap):
        return items
    if isinstance(items, str):
        items = (items,)
    columns: dict[str, str] = {}
    labels: dict[str, str] = {}
    for item in items:
        for pair in (p for p in re.split(r",(?=[^,=]+=)", item) if p.strip()):
            target, sep, source = pair.partition("=")
            target, source = target.strip(), source.strip()
            if not sep or not target or not source:
                raise UserError(
                    f"--map {pair!r}: expected target=source, e.g. --map psp=PSP_total,arm=gruppe"
                )
            if target.casefold() in ARM_KEYS:
                labels[source.casefold()] = target.casefold()
                continue
            if role_of(target) is None:
                close = difflib.get_close_matches(target.casefold(), MAP_TARGETS, n=1, cutoff=0.8)
                if close:
                    raise UserError(
                        f"--map {pair!r}: unknown role {target!r} (did you mean {close[0]!r}?); "
                        f"roles are {', '.join(MAP_TARGETS)}; any other name renames a column "
                        "(e.g. an outcome)"
                    )
            if target in columns and columns[target] != source:
                raise UserError(
                    f"--map: {target!r} is mapped twice ({columns[target]!r}, {source!r})"
                )
            columns[target] = source
    if len([v for v in labels.values() if v == "control"]) > 1:
        raise UserError("--map: control=LABEL is given twice; name one reference arm")
    return ColumnMap(columns, labels)


def find_column(col: str, present: list[str], *, source: str, option: str) -> str:
    """The file's column ``col`` (exact, else ignoring case); a one-line error otherwise."""
    if col in present:
        return col
    folded = {c.casefold(): c for c in present}
    if col.casefold() in folded:
        return folded[col.casefold()]
    close = difflib.get_close_matches(col, present, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UserError(f"{source}: {option}: the file has no column {col!r}{hint}")


def label_text(value) -> str | None:
    """A cell as a label: None for missing, ``3`` not ``3.0``, text stripped."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float):
        if value != value:
            return None
        if value == int(value):
            return str(int(value))
        return repr(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    return text or None


def labels_of(values: pd.Series) -> pd.Series:
    """A column as text labels (object dtype, None where missing)."""
    uniques = pd.unique(values.dropna())
    lookup = {u: label_text(u) for u in uniques}
    return values.astype(object).map(lookup).where(values.notna(), None)


def is_control_label(label: str) -> bool:
    return " ".join(str(label).casefold().split()) in CONTROL_LABELS


def suggest_column(wanted: str, columns: list[str]) -> str | None:
    """The file column most likely meant for role ``wanted`` (or None)."""
    free = [c for c in columns if not c.startswith("_") and role_of(c) is None]
    folded = {c.casefold().replace(" ", "_"): c for c in free}
    for hint in HINTS.get(wanted, ()):
        if hint in folded:
            return folded[hint]
    close = difflib.get_close_matches(wanted, list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None
