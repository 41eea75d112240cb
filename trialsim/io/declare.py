"""What the user declares about a data file: the options every data-reading command shares.

:class:`Declarations` collects ``--map``, ``--wide/--long``, ``--scenario``, ``--covariate``,
``--outcome-type``, ``--better``, ``--bounds``, ``--mcid``, ``--reference``, ``--pool``,
``--sheet`` and ``--visit-months`` (see :func:`trialsim.cli.common.data_options`) into one
frozen object, which :func:`trialsim.io.read_trial_data` and
:func:`trialsim.io.check_trial_file` take as ``declared``.

Outcome names are matched case-insensitively (the reader lower-cases outcome and covariate
names). ``better`` and ``mcid`` may hold the key ``None``: a bare ``--better higher`` or
``--mcid 7`` meant for the outcome being analysed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from trialsim.errors import UserError
from trialsim.structure import OUTCOME_TYPES

_COV_KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class Declarations:
    """Everything the user said about a data file (all optional).

    Fields
    ------
    mapping : ``--map`` texts (``role=COLUMN``, ``NAME=COLUMN``, ``treatment=LABEL``, ...).
    wide : ``--wide`` (True), ``--long`` (False) or detect (None).
    scenario : ``--scenario`` path; its outcome specs give types, bounds, direction, MCID.
    covariates : ``((name, kind or None), ...)`` from ``--covariate NAME[:kind]``.
    outcome_types : outcome -> type (``--outcome-type NAME=TYPE``).
    better : outcome (or None = the analysed outcome) -> ``higher``/``lower``.
    bounds : outcome -> (low, high), either None for open (``--bounds NAME=LOW,HIGH``).
    mcid : outcome (or None) -> MCID.
    reference : the reference (control) arm label (``--reference``).
    pool : ``((new label, (old labels...)), ...)`` from ``--pool NEW=A+B``.
    sheet : the .xlsx sheet to read (``--sheet``; default the first).
    visit_months : wide visit label (lower case) -> month (``--visit-months LABEL=MONTH,...``).
    """

    mapping: tuple[str, ...] = ()
    wide: bool | None = None
    scenario: Path | None = None
    covariates: tuple[tuple[str, str | None], ...] = ()
    outcome_types: dict[str, str] = field(default_factory=dict)
    better: dict[str | None, str] = field(default_factory=dict)
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    mcid: dict[str | None, float] = field(default_factory=dict)
    reference: str | None = None
    pool: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sheet: str | None = None
    visit_months: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls,
        *,
        mapping=(),
        wide: bool | None = None,
        scenario=None,
        covariate=(),
        outcome_type=(),
        better=(),
        bounds=(),
        mcid=(),
        reference: str | None = None,
        pool=(),
        sheet: str | None = None,
        visit_months=(),
    ) -> Declarations:
        """Parse the option texts (each a string or a tuple of repeated strings).

        Raises ``ValueError`` with one line naming the option and the expected form.
        """
        return cls(
            mapping=_texts(mapping),
            wide=wide,
            scenario=Path(scenario) if scenario else None,
            covariates=tuple(_covariate(t) for t in _items(covariate)),
            outcome_types=_pairs("--outcome-type", outcome_type, _outcome_type),
            better=_pairs("--better", better, _better, bare=True),
            bounds=_pairs("--bounds", bounds, _bounds, split_commas=False),
            mcid=_pairs("--mcid", mcid, _number("--mcid"), bare=True),
            reference=reference.strip() if reference else None,
            pool=tuple(_pool(t) for t in _texts(pool)),
            sheet=sheet,
            visit_months={
                k.casefold(): v
                for k, v in _pairs(
                    "--visit-months", visit_months, _number("--visit-months")
                ).items()
            },
        )

    def with_read_options(self, mapping=None, wide: bool | None = None) -> Declarations:
        """These declarations plus the old positional ``mapping``/``wide`` arguments."""
        extra = _texts(mapping) if mapping is not None and not hasattr(mapping, "columns") else ()
        return replace(
            self,
            mapping=self.mapping + extra,
            wide=self.wide if wide is None else wide,
        )

    # -- look-ups (case-insensitive) -------------------------------------------------------

    def outcome_type(self, name: str) -> str | None:
        return _get(self.outcome_types, name)

    def better_for(self, name: str | None) -> str | None:
        """``--better NAME=...`` for ``name``, else a bare ``--better``."""
        return (_get(self.better, name) if name else None) or self.better.get(None)

    def mcid_for(self, name: str | None) -> float | None:
        value = _get(self.mcid, name) if name else None
        return value if value is not None else self.mcid.get(None)

    def bounds_for(self, name: str) -> tuple[float | None, float | None] | None:
        return _get(self.bounds, name)

    def named_outcomes(self) -> set[str]:
        """Lower-cased outcome names the options speak of (to check they exist)."""
        keys = [*self.outcome_types, *self.bounds, *self.better, *self.mcid]
        return {k.casefold() for k in keys if k is not None}


def _get(d: dict, name: str | None):
    if name is None:
        return None
    if name in d:
        return d[name]
    folded = name.casefold()
    for k, v in d.items():
        if k is not None and k.casefold() == folded:
            return v
    return None


def _items(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _texts(value) -> tuple[str, ...]:
    return tuple(t for t in _items(value) if t and t.strip())


def _pairs(option, values, convert, *, bare=False, split_commas=True) -> dict:
    """``NAME=VALUE`` items (comma-separated unless ``split_commas`` is False) to a dict;
    with ``bare`` a value without a name is stored under ``None``."""
    out: dict = {}
    for item in _texts(values):
        parts = re.split(r",(?=[^,=]+=)", item) if split_commas else [item]
        for part in (p.strip() for p in parts if p.strip()):
            name, sep, value = part.partition("=")
            if not sep:
                if bare:
                    out[None] = convert(name.strip())
                    continue
                raise UserError(f"{option} {part!r}: expected NAME=VALUE")
            name = name.strip()
            if not name:
                raise UserError(f"{option} {part!r}: the name before '=' is empty")
            out[name] = convert(value.strip())
    return out


def _outcome_type(text: str) -> str:
    t = text.casefold()
    if t not in OUTCOME_TYPES:
        raise UserError(
            f"--outcome-type: unknown type {text!r}; use one of {', '.join(OUTCOME_TYPES)}"
        )
    return t


def _better(text: str) -> str:
    t = text.casefold()
    if t not in ("higher", "lower"):
        raise UserError(f"--better: {text!r} is not 'higher' or 'lower'")
    return t


def _number(option):
    def convert(text: str) -> float:
        try:
            value = float(text.replace(",", ".") if text.count(",") == 1 else text)
        except ValueError:
            raise UserError(f"{option}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{option}: {text!r} is not a finite number")
        return value

    return convert


def _bounds(text: str) -> tuple[float | None, float | None]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise UserError(
            f"--bounds: {text!r}: expected NAME=LOW,HIGH (leave one side empty if open), "
            "e.g. --bounds psp=1,100"
        )

    def one(p):
        if p in ("", "inf", "-inf", "+inf"):
            return None
        try:
            return float(p)
        except ValueError:
            raise UserError(f"--bounds: {p!r} is not a number") from None

    low, high = one(parts[0]), one(parts[1])
    if low is not None and high is not None and low >= high:
        raise UserError(f"--bounds: {text!r}: the low bound must be below the high bound")
    return (low, high)


def _covariate(text: str) -> tuple[str, str | None]:
    name, sep, kind = text.strip().rpartition(":")
    if not sep or kind.casefold() not in _COV_KINDS:
        return (text.strip(), None)
    if not name:
        raise UserError(f"--covariate {text!r}: the name is empty")
    return (name, kind.casefold())


def _pool(text: str) -> tuple[str, tuple[str, ...]]:
    new, sep, old = text.partition("=")
    labels = tuple(p.strip() for p in old.split("+") if p.strip())
    if not sep or not new.strip() or len(labels) < 2:
        raise UserError(
            f"--pool {text!r}: expected NEW=A+B (two or more arm labels pooled into NEW), "
            "e.g. --pool active=CBT+FT"
        )
    return (new.strip(), labels)
