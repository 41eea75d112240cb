"""Power curves over the sample size: analytic and simulated, on common random numbers.

A curve varies one size of the scenario, holding everything else (the allocation ratio, the
group size unless it is the one varied):

=====================  =============================================================
size key               what changes in the scenario
=====================  =============================================================
``n_participants``     every municipality's participants scaled to the total N
``participants_scale`` every municipality's participants times the factor
``n_groups``           participants scaled so the treated arm fills about G groups
                       of the scenario's mean size (the exact count is reported)
``group_size``         ``groups.mean_size`` set to m and participants scaled by m / m0,
                       so the number of groups stays (min/max sizes widened if needed)
=====================  =============================================================

Every point is simulated with the same seed (common random numbers: the same root draws for
people, attendance and dropout wherever the shapes agree), so neighbouring points differ by
the design change more than by Monte Carlo noise. The N reaching the target power is read
off the simulated curve by linear interpolation, and its uncertainty from the curves at
power +- 1.96 Monte Carlo SEs (where they cross the target).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trialsim.errors import UserError

#: Sizes a curve or a sweep (``--vary``) can vary, see the module docstring.
SIZE_KEYS = ("n_participants", "participants_scale", "n_groups", "group_size")


def size_overrides(raw: dict, key: str, value: float) -> dict:
    """Dotted scenario keys and values that give the scenario ``raw`` the size ``key=value``."""
    if key not in SIZE_KEYS:
        raise UserError(f"size {key!r}: choose one of {', '.join(SIZE_KEYS)}")
    sites = raw.get("sites", {})
    groups = raw.get("groups", {})
    participants = np.asarray(sites.get("participants", []), dtype=float)
    if participants.size == 0:
        raise UserError("the scenario lists no sites.participants to scale")
    if not (isinstance(value, int | float) and value > 0):
        raise UserError(f"{key}={value!r}: a size must be a positive number")
    out: dict = {}
    if key == "participants_scale":
        factor = float(value)
    elif key == "n_participants":
        factor = float(value) / participants.sum()
    elif key == "n_groups":
        factor = float(value) / _groups_now(raw)
    else:  # group_size
        m0 = float(groups.get("mean_size", 6.3))
        factor = float(value) / m0
        out["groups.mean_size"] = float(value)
        out["groups.max_size"] = max(int(groups.get("max_size", 10)), math.ceil(value * 1.6))
        out["groups.min_size"] = min(int(groups.get("min_size", 3)), max(1, math.floor(value)))
    scaled = np.maximum(2, np.round(participants * factor)).astype(int)
    out["sites.participants"] = [int(x) for x in scaled]
    return out


def _groups_now(raw: dict) -> float:
    from trialsim.power.from_scenario import analytic_parameters
    from trialsim.scenario import scenario_from_dict

    s = scenario_from_dict(raw)
    formula, params = analytic_parameters(s, arm=s.arm_labels[1] if s.n_arms > 2 else None)
    if formula != "irgt":
        raise UserError(
            f"n_groups varies the treatment groups of an individually randomised design; this "
            f"scenario uses the {formula} formula: vary n_participants instead"
        )
    return float(params["n_groups"])


def with_size(raw: dict, key: str, value: float, *, source: str = "<scenario>"):
    """The scenario ``raw`` at size ``key=value`` (a validated Scenario)."""
    from trialsim.design.grid import overrides_for
    from trialsim.scenario import apply_overrides, scenario_from_dict

    over = size_overrides(raw, key, value)
    new = apply_overrides(copy.deepcopy(raw), overrides_for(over), source=source)
    return scenario_from_dict(new, source=f"{source} at {key}={value:g}")


@dataclass(frozen=True)
class CurvePoint:
    value: float  # the size asked for
    n_participants: int  # randomised at that size
    n_groups: float | None  # treatment groups (irgt), None for cluster designs
    analytic: float  # NaN where no formula covers the design or outcome
    power: float
    power_mcse: float
    type1: float
    type1_mcse: float


@dataclass(frozen=True)
class PowerCurve:
    key: str
    analysis: str
    outcome: str
    reps: int
    seed: int
    target: float
    points: list[CurvePoint]
    read_off: dict  # {"n", "low", "high"} in units of key (None where not bracketed)

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "analysis": self.analysis,
            "outcome": self.outcome,
            "reps": self.reps,
            "seed": self.seed,
            "target": self.target,
            "points": [vars(p) for p in self.points],
            "read_off": self.read_off,
        }


def power_curve(
    raw: dict,
    key: str,
    values: Sequence[float],
    *,
    reps: int,
    seed: int,
    target: float = 0.8,
    alpha: float = 0.05,
    outcome: str | None = None,
    analysis=None,
    source: str = "<scenario>",
    progress=None,
    df: str = "satterthwaite",
) -> PowerCurve:
    """Analytic and simulated power of the scenario ``raw`` at each size ``key=value``
    (same seed at every point), and the size reaching ``target`` read off the simulated curve
    (``df``: the mixed model's small-sample method, satterthwaite or kenward-roger).
    ``analysis``: a registered name or an Analysis (e.g. from ``--formula``); default the
    structure's rule.
    """
    from trialsim.analyse.registry import default_analysis
    from trialsim.power.from_scenario import analytic_parameters, analytic_power
    from trialsim.power.simulation import simulate_operating_characteristics

    values = sorted(float(v) for v in values)
    if len(values) < 2:
        raise UserError("a power curve needs at least two sizes")
    points, name, out_name = [], analysis, outcome
    for value in values:
        s = with_size(raw, key, value, source=source)
        out_name = outcome or s.primary
        name = analysis or default_analysis(s.structure, out_name).name
        arm = s.arm_labels[1] if s.n_arms > 2 else None
        try:
            analytic = float(analytic_power(s, out_name, arm=arm, alpha=alpha)["power"])
            formula, params = analytic_parameters(s, out_name, arm)
            groups = float(params["n_groups"]) if formula == "irgt" else None
        except ValueError:
            analytic, groups = float("nan"), None
        (oc,), _ = simulate_operating_characteristics(
            s,
            [name],
            reps=reps,
            seed=seed,
            outcome=out_name,
            alpha=alpha,
            progress=progress,
            df=df,
        )
        points.append(
            CurvePoint(
                value,
                s.n_participants,
                groups,
                analytic,
                oc.power,
                oc.power_mcse,
                oc.type1,
                oc.type1_mcse,
            )
        )
    x = np.array([p.value for p in points])
    y = np.array([p.power for p in points])
    e = np.array([p.power_mcse for p in points])
    read = {
        "n": crossing(x, y, target),
        # the upper band reaches the target first (smaller N), the lower band last
        "low": crossing(x, y + 1.96 * e, target),
        "high": crossing(x, y - 1.96 * e, target),
    }
    label = name if isinstance(name, str) else name.name  # --formula: an Analysis
    return PowerCurve(key, label, out_name, reps, seed, target, points, read)


def crossing(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """The smallest x at which the piecewise-linear curve (x, y) reaches ``target``; None if
    it never does within the range, ``x[0]`` if it is already there at the first point."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    above = np.nonzero(y >= target)[0]
    if above.size == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def format_curve(curve: PowerCurve) -> list[str]:
    """The curve as a table and the read-off line."""
    head = (
        f"{curve.key:>18}{'participants':>14}{'groups':>8}{'analytic':>10}"
        f"{'simulated':>18}{'type I':>16}"
    )
    lines = [
        f"power curve over {curve.key} ({curve.analysis} on {curve.outcome}, {curve.reps} "
        f"replicates per point, the same seed {curve.seed} at every point)",
        head,
        "-" * len(head),
    ]
    for p in curve.points:
        groups = f"{p.n_groups:.0f}" if p.n_groups is not None else "-"
        analytic = f"{p.analytic:.3f}" if np.isfinite(p.analytic) else "n/a"
        lines.append(
            f"{p.value:>18.4g}{p.n_participants:>14d}{groups:>8}{analytic:>10}"
            f"{p.power:>11.3f} ± {p.power_mcse:.3f}{p.type1:>9.3f} ± {p.type1_mcse:.3f}"
        )
    r = curve.read_off

    def show(v):
        return "beyond the range" if v is None else f"{v:.4g}"

    lines.append(
        f"{curve.key} for power {curve.target:g} (simulated curve): {show(r['n'])} "
        f"(from {show(r['low'])} to {show(r['high'])} within ± 1.96 Monte Carlo SE)"
    )
    return lines
