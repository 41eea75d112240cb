"""Write a parsed scenario mapping back as TOML (no TOML writer is among the dependencies).

``tomllib.loads(dumps(raw)) == raw`` for every mapping tomllib can produce (tables, arrays,
inline tables in arrays, strings, booleans, integers, floats including inf/nan, dates, times
and date-times); comments of the original file are not kept.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def key(name: str) -> str:
    """A TOML key: bare when it can be, else a quoted string."""
    return name if _BARE.match(name) else string(name)


def string(text: str) -> str:
    # JSON's string escapes (\" \\ \n \t \uXXXX) are TOML basic-string escapes
    return json.dumps(text, ensure_ascii=False)


def value(v: Any) -> str:
    """One TOML value (inline): also the text of a ``--set key=VALUE``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, datetime.date | datetime.time):  # datetime is a date
        return v.isoformat()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def dumps(raw: dict, *, header: str = "") -> str:
    """The TOML text of ``raw``: plain keys first, then one ``[table]`` per sub-mapping."""
    lines = [f"# {line}" for line in header.splitlines()]
    _table(raw, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(d: dict, path: tuple[str, ...], lines: list[str]) -> None:
    plain = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    if path and (plain or not tables):
        lines += ["", "[" + ".".join(key(p) for p in path) + "]"]
    lines += [f"{key(k)} = {value(v)}" for k, v in plain.items()]
    for k, v in tables.items():
        _table(v, (*path, k), lines)
