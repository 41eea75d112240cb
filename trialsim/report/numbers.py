"""Numbers formatted for people: thousands separators, percentages, money, ± Monte Carlo SE.

The ``±`` joins its number with non-breaking spaces so an estimate and its MCSE stay on one
line in any table cell.
"""

from __future__ import annotations

import math

NBSP = "\u00a0"
PM = f"{NBSP}±{NBSP}"
MINUS = "\u2212"


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _minus(text: str) -> str:
    return text.replace("-", MINUS) if text.startswith("-") else text


def count(value) -> str:
    """An integer count with thousands separators: ``1,234``."""
    return "" if missing(value) else _minus(f"{round(float(value)):,}")


def number(value, digits: int = 3) -> str:
    """A measurement to ``digits`` significant figures, thousands separated when large."""
    if missing(value):
        return ""
    value = float(value)
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return count(value)
    if abs(value) >= 10 ** (digits - 1):
        return _minus(f"{value:,.0f}")
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return _minus(f"{value:,.{decimals}f}")


def money(value, currency: str | None = None) -> str:
    """``DKK 2,000,000``; without a currency ``2,000,000``."""
    if missing(value):
        return ""
    text = f"{round(float(value)):,}"
    return f"{currency}{NBSP}{text}" if currency else text


def percent(value, se=None, *, digits: int = 0) -> str:
    """A probability as a percentage, with its MCSE: ``62 % ± 1 %`` (no line break inside)."""
    if missing(value):
        return ""
    value = float(value)
    tiny = 0.5 * 10.0 ** -(digits + 2)
    if 0 < value < tiny:
        text = f"<{NBSP}{10.0**-digits:g}{NBSP}%"
    elif 1 - tiny <= value < 1:
        text = f">{NBSP}{100 - 10.0**-digits:g}{NBSP}%"
    else:
        text = f"{100 * value:.{digits}f}{NBSP}%"
    if not missing(se):
        text += f"{PM}{max(100 * float(se), 10**-digits):.{digits}f}{NBSP}%"
    return text


def pm(value, se=None, digits: int = 3) -> str:
    """``0.863 ± 0.011``: the estimate to ``digits`` decimals and its MCSE, kept on one line."""
    if missing(value):
        return ""
    text = _minus(f"{float(value):.{digits}f}")
    if not missing(se):
        text += f"{PM}{float(se):.{digits}f}"
    return text


def span(low, high, fmt=number) -> str:
    """``18.2 to 26.0`` (a range that cannot be confused with a subtraction)."""
    return f"{fmt(low)} to {fmt(high)}"


def cell(value, se=None) -> str:
    """A generic table cell: counts without decimals, floats to 4 significant figures."""
    if missing(value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float):
        if not missing(se):
            digits = max(2, min(4, 1 - math.floor(math.log10(abs(float(se)) or 1e-12))))
            return pm(value, se, digits)
        if value.is_integer() and abs(value) < 1e15:
            return count(value)
        return number(value, 4)
    return str(value)
