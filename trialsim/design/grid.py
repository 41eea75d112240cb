"""Parameter grids for sweeps: parse ``KEY=VALUES``, expand the product, key and seed each cell.

A cell is a mapping of dotted scenario keys to values. Its *canonical key* is the JSON of the
sorted mapping with numbers normalised (``0.10`` and ``0.1`` are the same cell), and its seed
is derived from that key and the root seed through :class:`numpy.random.SeedSequence`
(NEP 19): the seed of a cell does not depend on which other cells are in the grid, on the
order in which they run, or on the number of workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np

from trialsim.errors import UserError
from trialsim.scenario import parse_value


@dataclass(frozen=True)
class Axis:
    """One varied scenario key and its values, in the order given."""

    key: str
    values: tuple

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)


def parse_vary(text: str) -> Axis:
    """Parse ``KEY=VALUES``: a list ``0.01,0.05,0.1`` or a range ``start:stop:n`` (n points).

    >>> parse_vary("groups.icc_group=0:0.1:3").values
    (0.0, 0.05, 0.1)
    >>> parse_vary("design.randomisation=individual,cohort").values
    ('individual', 'cohort')

    Sample sizes (see :mod:`trialsim.power.curve`): ``n_participants``, ``n_groups``,
    ``group_size`` and ``sites.participants=scale:0.5:2:4`` (every municipality's
    participants times each factor; the axis is named ``participants_scale``).

    >>> parse_vary("sites.participants=scale:0.5:2:4")
    Axis(key='participants_scale', values=(0.5, 1.0, 1.5, 2.0))
    """
    key, sep, values = text.partition("=")
    key, values = key.strip(), values.strip()
    if not sep or not key or not values:
        raise UserError(
            f"--vary {text!r}: expected KEY=VALUES, e.g. groups.icc_group=0.01,0.05,0.1 or "
            "groups.icc_group=0.01:0.1:5"
        )
    if values.startswith("scale:"):
        # sites.participants=scale:0.5:2:5 -- every municipality's participants times a factor
        if key != "sites.participants":
            raise UserError(
                f"--vary {text!r}: scale: applies to sites.participants (e.g. "
                "sites.participants=scale:0.5:2:4); other sizes: n_participants, n_groups, "
                "group_size"
            )
        return parse_vary("participants_scale=" + values.removeprefix("scale:"))
    if key == "sites.participants":
        raise UserError(
            f"--vary {text!r}: vary the number of participants with "
            "sites.participants=scale:0.5:2:4 (factors), n_participants=200,340,500, "
            "n_groups=20:50:4 or group_size=4,6,8"
        )
    if values.count(":") == 2 and "," not in values:
        start, stop, n = (parse_value(p.strip()) for p in values.split(":"))
        if not all(isinstance(v, int | float) for v in (start, stop)) or not isinstance(n, int):
            raise UserError(
                f"--vary {text!r}: a range is start:stop:n with numbers and a whole n, "
                "e.g. 0.01:0.1:5"
            )
        if n < 1:
            raise UserError(f"--vary {text!r}: the number of points n must be at least 1")
        points = np.linspace(start, stop, n)
        if isinstance(start, int) and isinstance(stop, int) and np.allclose(points, points.round()):
            parsed = tuple(int(round(p)) for p in points)
        else:
            parsed = tuple(_tidy_float(p) for p in points)
    else:
        parsed = tuple(parse_value(p.strip()) for p in values.split(",") if p.strip())
    if len(set(map(canonical_value, parsed))) != len(parsed):
        raise UserError(f"--vary {text!r}: values repeat; list each value once")
    return Axis(key, parsed)


def _tidy_float(x: float) -> float:
    """Round away binary noise of linspace (0.30000000000000004 -> 0.3)."""
    return float(f"{float(x):.12g}")


def canonical_value(value):
    """Numbers that are equal compare equal in keys (1 == 1.0); floats to 12 digits."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return _tidy_float(value) if isinstance(value, float) else value


def expand_grid(axes: list[Axis]) -> list[dict]:
    """The product of the axes, in row-major order (last axis fastest)."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise UserError(f"--vary: each key may be varied once, got {keys}")
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*[a.values for a in axes])
    ]


def cell_key(params: dict) -> str:
    """Canonical JSON of a cell's parameters (sorted keys, normalised numbers)."""
    return json.dumps(
        {k: canonical_value(v) for k, v in sorted(params.items())}, sort_keys=True, default=str
    )


def cell_hash(params: dict) -> str:
    """A short stable name for a cell (first 16 hex digits of the SHA-256 of its key)."""
    return hashlib.sha256(cell_key(params).encode()).hexdigest()[:16]


def cell_seed(root_seed: int, params: dict) -> int:
    """The cell's seed: SeedSequence(entropy=(root seed, hash of the canonical key)).

    Returns a 63-bit integer, used as the root seed of the cell's simulation.
    """
    digest = hashlib.sha256(cell_key(params).encode()).digest()
    ss = np.random.SeedSequence(entropy=(int(root_seed), int.from_bytes(digest[:16], "little")))
    return int(ss.generate_state(1, dtype=np.uint64)[0]) >> 1


def overrides_for(params: dict) -> list[str]:
    """``--set``-style overrides for a cell (strings are quoted for TOML)."""
    return [
        f"{k}={json.dumps(v) if isinstance(v, str) else _toml_value(v)}" for k, v in params.items()
    ]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
