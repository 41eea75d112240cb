"""Solve an analytic power equation for exactly one unknown, in the style of statsmodels.

>>> solve_power("crt", effect=0.3, n_clusters=None, cluster_size=20, icc=0.05, power=0.8)
19

Counts (groups, clusters, sizes, participants) are whole numbers: the answer is the smallest
integer whose power reaches the target, found by ``scipy.optimize.brentq`` on the continuous
relaxation, rounded up and then verified, so ``power(n) >= target > power(n - 1)``. The
effect is solved on the real line and returned as a positive minimum detectable effect.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
from scipy import optimize

from trialsim.errors import UserError
from trialsim.power import analytic_glm as glm
from trialsim.power.analytic import power_crt, power_irgt, power_stepped_wedge

__all__ = ["RATIOS", "SOLVABLE", "base_design", "solve_count", "solve_power", "solve_ratio"]

_FUNCTIONS: dict[str, Callable[..., float]] = {
    "irgt": power_irgt,
    "crt": power_crt,
    "stepped_wedge": power_stepped_wedge,
    "irgt-binary": glm.power_irgt_binary,
    "irgt-count": glm.power_irgt_count,
    "crt-binary": glm.power_crt_binary,
    "crt-count": glm.power_crt_count,
    "stepped_wedge-binary": glm.power_stepped_wedge_binary,
    "stepped_wedge-count": glm.power_stepped_wedge_count,
}

#: The effect argument of the binary and count formulas (a ratio, solved on the log scale).
RATIOS = {"binary": "odds_ratio", "count": "rate_ratio"}


def base_design(formula: str) -> str:
    """The design of a formula name: ``"irgt-binary"`` -> ``"irgt"``."""
    return formula.split("-")[0]


#: Arguments each design can solve for; the integer ones map to their smallest allowed value.
SOLVABLE: dict[str, tuple[str, ...]] = {
    "irgt": (
        "effect",
        "power",
        "n_groups",
        "group_size",
        "n_control",
        "icc",
        "sd",
        "alpha",
        "dropout",
    ),
    "crt": ("effect", "power", "n_clusters", "cluster_size", "icc", "sd", "alpha", "dropout"),
    # the stepped wedge's power is not monotone in the ICC (within-cluster comparisons gain
    # from a large between-cluster variance), so the ICC is not solvable there
    "stepped_wedge": (
        "effect",
        "power",
        "clusters_per_step",
        "n_per_period",
        "sd",
        "alpha",
        "dropout",
    ),
}
for _kind, _ratio in RATIOS.items():
    _between = ("icc",) if _kind == "binary" else ()
    SOLVABLE[f"irgt-{_kind}"] = (
        _ratio, "power", "n_groups", "group_size", "n_control", *_between, "alpha", "dropout",
    )  # fmt: skip
    SOLVABLE[f"crt-{_kind}"] = (
        _ratio, "power", "n_clusters", "cluster_size", "icc", "alpha", "dropout",
    )  # fmt: skip
    SOLVABLE[f"stepped_wedge-{_kind}"] = (
        _ratio, "power", "clusters_per_step", "n_per_period", "alpha", "dropout",
    )  # fmt: skip

#: Continuous unknowns other than the effect: (lower end, upper end, power rises with it).
#: The answer is the value at which power equals the target: the largest ICC, SD or dropout
#: share that still reaches it, or the smallest alpha that does.
_CONTINUOUS = {
    "icc": (0.0, 1.0 - 1e-9, False),
    "sd": (0.0, np.inf, False),
    "alpha": (1e-12, 1.0 - 1e-9, True),
    "dropout": (0.0, 0.9, False),  # at least 10 % complete: the formulas need completers
}

# Arguments with a default in the power functions: unknown only when passed as None.
_DEFAULTED = {"sd", "alpha", "dropout"}

_INTEGER = {
    "n_groups",
    "group_size",
    "n_control",
    "n_clusters",
    "cluster_size",
    "clusters_per_step",
    "n_per_period",
}

# Counts that only make sense as whole numbers (they build a design matrix): solved by integer
# bisection instead of brentq on a continuous relaxation.
_DISCRETE_ONLY = {"clusters_per_step"}

# Largest count tried before a target is declared unreachable.
_MAX_COUNT = 10**7

# Why power levels off when a count grows without bound, keyed by (design, argument).
_PLATEAU_REASON = {
    ("irgt", "group_size"): (
        "with n_groups fixed, the group-level variance icc/(1-icc)*sd^2/n_groups does not "
        "shrink as groups get larger; add groups instead"
    ),
    ("irgt", "n_control"): (
        "the treated-arm variance (groups) remains however many controls are recruited; add "
        "groups or participants per group instead"
    ),
    ("crt", "cluster_size"): (
        "with n_clusters fixed, the between-cluster variance does not shrink as clusters get "
        "larger; add clusters instead"
    ),
}


def _lowest_count(design: str, name: str, params: dict) -> int:
    """Smallest value of an integer unknown for which the power function is defined."""
    design = base_design(design)
    if design == "irgt" and name == "n_control":
        dropout = float(params.get("dropout", 0.0))
        return max(2, math.floor(1.0 / (1.0 - dropout)) + 1)
    if design == "irgt" and name == "n_groups":
        return 2
    if design == "crt" and name == "n_clusters":
        ratio = float(params.get("cluster_ratio", 1.0))
        return max(2, math.ceil((3 + float(params.get("n_covariates", 0))) / (1 + ratio)))
    if design == "stepped_wedge" and name == "clusters_per_step" and params.get("dist") == "t":
        return max(1, math.ceil(3 / float(params["n_steps"])))
    return 1


def _optional(design: str, name: str) -> bool:
    """The binary and count formulas take the ICC or Hayes & Bennett's cv_between: their
    ``icc`` is unknown only when passed as None."""
    return name == "icc" and design != base_design(design)


def _solvable(design: str, params: dict) -> tuple[str, ...]:
    names = SOLVABLE[design]
    if base_design(design) == "stepped_wedge" and params.get("treatment_matrix") is not None:
        # an explicit treatment matrix fixes the number of clusters
        names = tuple(n for n in names if n != "clusters_per_step")
    return names


def solve_power(design: str, /, **params):
    """Solve the power equation of ``design`` for the one argument passed as ``None``.

    Parameters
    ----------
    design : "irgt" (:func:`~trialsim.power.analytic.power_irgt`), "crt"
        (:func:`~trialsim.power.analytic.power_crt`) or "stepped_wedge"
        (:func:`~trialsim.power.analytic.power_stepped_wedge`); for binary and count
        outcomes the same with "-binary" or "-count" (:mod:`trialsim.power.analytic_glm`),
        whose effect is ``odds_ratio`` or ``rate_ratio`` (solved as the ratio nearest 1
        above 1 reaching the target).
    **params : the keyword arguments of that power function plus ``power`` (the target).
        Exactly one of the solvable arguments -- ``effect``, ``power`` and the design's counts
        (see :data:`SOLVABLE`) -- must be ``None`` or left out; all must be scalars.

    Returns
    -------
    float or int : power or minimum detectable effect (float); or the smallest whole number
        of groups, clusters or participants meeting the target power (int).

    Raises
    ------
    ValueError : zero or several unknowns, a bad parameter value, or a target that cannot be
        reached (the message says why, e.g. the power plateau of a fixed number of groups).

    Examples
    --------
    >>> solve_power("irgt", effect=0.4, n_groups=None, group_size=8, n_control=80, icc=0.05,
    ...             power=0.8)
    24
    """
    if design not in _FUNCTIONS:
        raise ValueError(f"design must be one of {sorted(_FUNCTIONS)}, got {design!r}")
    func = _FUNCTIONS[design]
    allowed = set(inspect.signature(func).parameters) | {"power"}
    unexpected = sorted(set(params) - allowed)
    if unexpected:
        raise TypeError(
            f"solve_power({design!r}) got unexpected argument(s) {unexpected}; "
            f"allowed: {sorted(allowed)}"
        )
    solvable = _solvable(design, params)
    unknown = [
        name
        for name in solvable
        if (name in params if name in _DEFAULTED or _optional(design, name) else True)
        and params.get(name) is None
    ]
    if len(unknown) != 1:
        what = "no argument is" if not unknown else f"{len(unknown)} arguments are"
        raise ValueError(
            f"exactly one of {list(solvable)} must be None, but {what} None"
            + (f": {unknown}" if unknown else "")
        )
    (target,) = unknown
    for name, value in params.items():
        if name != "treatment_matrix" and value is not None and np.ndim(value) != 0:
            raise ValueError(
                f"solve_power needs scalar arguments; {name} has shape {np.shape(value)}"
            )

    fixed = {k: v for k, v in params.items() if k != "power" and v is not None}
    if target == "power":
        return func(**fixed)

    goal = params["power"]
    alpha = 0.0 if target == "alpha" else float(params.get("alpha", 0.05))
    if not (isinstance(goal, int | float | np.floating) and alpha < goal < 1.0):
        raise UserError(f"power must be a number in (alpha={alpha:g}, 1), got {goal!r}")

    def shortfall(x: float) -> float:
        return func(**fixed, **{target: x}) - goal

    if target == "effect":
        return _solve_effect(shortfall, float(params.get("sd", 1.0)))
    if target in RATIOS.values():
        return solve_ratio(lambda r: shortfall(r) + goal, goal, name=target)
    if target in _CONTINUOUS:
        scale = abs(float(params.get("effect") or 1.0))
        return solve_continuous(target, shortfall, goal, scale=scale)
    return _solve_count(design, target, shortfall, goal, _lowest_count(design, target, params))


def solve_continuous(name: str, shortfall: Callable[[float], float], goal: float, *, scale=1.0):
    """Root of ``shortfall`` (power minus target) in the range of ``name`` (icc, sd, alpha,
    dropout); ValueError naming the reachable power when the target is out of the range."""
    low, high, rising = _CONTINUOUS[name]
    if name == "sd":  # bracket (0, hi]: power -> 1 as sd -> 0 and -> alpha as sd grows
        low, high = 1e-2 * scale, scale
        for _ in range(200):
            if shortfall(high) < 0:
                break
            high *= 2.0
    high = _valid_end(shortfall, low, high)
    f_low, f_high = shortfall(low), shortfall(high)
    if rising and f_high < 0 or not rising and f_low < 0:
        best = (f_high if rising else f_low) + goal
        end = high if rising else low
        raise UserError(
            f"target power {goal:g} is unreachable by changing {name}: power is at most "
            f"{best:.4f} (at {name}={end:.4g})"
        )
    if rising and f_low >= 0 or not rising and f_high >= 0:
        edge = low if rising else high
        raise UserError(
            f"target power {goal:g} is reached over the whole range of {name} "
            f"(power {shortfall(edge) + goal:.4f} at {name}={edge:.4g}): no single answer"
        )
    return float(optimize.brentq(shortfall, low, high, xtol=1e-12, rtol=1e-12))


def _valid_end(shortfall: Callable[[float], float], low: float, high: float) -> float:
    """The largest end of ``[low, high]`` at which the power function is defined (e.g. a
    dropout share leaving at least two control completers), by bisection."""
    try:
        shortfall(high)
        return high
    except ValueError:
        pass
    ok, bad = low, high
    for _ in range(60):
        mid = (ok + bad) / 2
        try:
            shortfall(mid)
            ok = mid
        except ValueError:
            bad = mid
    return ok


def solve_count(
    power_of: Callable[[float], float], name: str, goal: float, *, lowest: int = 1, design=""
) -> int:
    """Smallest whole ``x >= lowest`` with ``power_of(x) >= goal`` for any power function of
    one count that rises with it (e.g. groups with the controls scaled alongside)."""
    return _solve_count(design, name, lambda x: power_of(x) - goal, goal, lowest)


def solve_ratio(
    power_of: Callable[[float], float], goal: float, *, name: str, below_one: bool = False
) -> float:
    """The odds or rate ratio nearest 1 (above 1, or below it with ``below_one``) whose power
    reaches ``goal``, solved on the log scale. The power of a log odds ratio falls again when
    the treated risk nears 1 (its variance grows faster than the effect): the search stops
    at the peak and says so."""
    sign = -1.0 if below_one else 1.0

    def at(log_r: float) -> float:
        return power_of(float(np.exp(sign * log_r))) - goal

    low, high, best = 0.0, 0.05, -np.inf
    while at(high) < 0:
        value = at(high) + goal
        if value < best or high > 50:
            raise UserError(
                f"target power {goal:g} is unreachable by changing {name}: power peaks at "
                f"{best:.4f} (the risk or rate in the treated arm runs out of room)"
            )
        best, low, high = value, high, high * 1.5
    root = optimize.brentq(at, low, high, xtol=1e-12, rtol=1e-12)
    return float(np.exp(sign * root))


def _solve_effect(shortfall: Callable[[float], float], scale: float) -> float:
    # power(0) = alpha < target and power -> 1 as effect grows, so a bracket always exists
    hi = scale
    for _ in range(200):
        if shortfall(hi) >= 0:
            break
        hi *= 2.0
    else:  # pragma: no cover - power -> 1 for every design with df >= 1
        raise UserError("could not bracket the minimum detectable effect")
    return float(optimize.brentq(shortfall, 0.0, hi, xtol=1e-12 * scale, rtol=1e-12))


def _solve_count(design: str, name: str, shortfall, goal: float, lowest: int) -> int:
    if shortfall(lowest) >= 0:
        return lowest
    below, above = lowest, 2 * lowest
    while shortfall(above) < 0:
        if above >= _MAX_COUNT:
            reached = shortfall(_MAX_COUNT) + goal
            reason = _PLATEAU_REASON.get((design, name), "the other arguments limit the power")
            raise UserError(
                f"target power {goal:g} is unreachable by increasing {name}: power is only "
                f"{reached:.4f} at {name}={_MAX_COUNT:g} and levels off because {reason}"
            )
        below, above = above, min(2 * above, _MAX_COUNT)
    if name in _DISCRETE_ONLY:
        while above - below > 1:  # invariant: shortfall(below) < 0 <= shortfall(above)
            mid = (below + above) // 2
            below, above = (below, mid) if shortfall(mid) >= 0 else (mid, above)
        return int(above)
    root = optimize.brentq(shortfall, below, above, xtol=1e-9, rtol=1e-12)
    n = max(lowest, math.ceil(root - 1e-9))
    # The relaxation is monotone in practice; these loops make the integer answer exact anyway.
    while shortfall(n) < 0:
        n += 1
    while n > lowest and shortfall(n - 1) >= 0:
        n -= 1
    return int(n)
