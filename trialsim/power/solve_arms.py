"""Solve for the sample size of a trial with three or more arms.

Every active arm is compared with the reference arm (:mod:`trialsim.power.analytic_arms`).
The allocation and the group size are held: participants (or groups) are added to every arm
in the scenario's proportions, so each contrast's groups and controls grow by one factor. The
answer is the smallest whole number of participants randomised in all (``n_participants``)
or treatment groups over the active arms (``n_groups``) at which the chosen decision reaches
the target power:

* ``each`` (default): every contrast on its own, i.e. the smallest per-contrast power;
* ``any``: at least one arm significant; ``all``: every arm significant;

each after the adjustment ``none``, ``bonferroni`` or ``dunnett``. As for two arms, the
municipalities' strata efficiency stays at the scenario's value (conservative as strata
fill up).
"""

from __future__ import annotations

import math

from trialsim.errors import UserError
from trialsim.power.analytic_arms import (
    ADJUSTMENTS,
    DECISIONS,
    decision_power,
    from_irgt_parameters,
)
from trialsim.power.solve import solve_count

#: the counts a multi-arm solve can find
ARM_UNKNOWNS = ("n_participants", "n_groups")

_DECISION_WORDS = {
    "each": "every contrast on its own (the weakest contrast's power)",
    "any": "at least one arm significant",
    "all": "every arm significant",
}
_ADJUSTMENT_WORDS = {"none": "unadjusted", "bonferroni": "Bonferroni", "dunnett": "Dunnett"}


def _scaled(params: list[dict], x: float) -> list[dict]:
    """Every contrast's formula inputs with each arm's participants times ``x`` (group size
    held: the groups scale)."""
    out = []
    for p in params:
        q = dict(p, n_groups=p["n_groups"] * x, n_control=p["n_control"] * x)
        if p.get("n_control_groups") is not None:
            q["n_control_groups"] = max(2.0, p["n_control_groups"] * x)
        out.append(q)
    return out


def solve_arms(
    s,
    unknown: str,
    target_power: float,
    outcome: str | None = None,
    *,
    decision: str = "each",
    adjustment: str = "none",
    alpha: float = 0.05,
) -> dict:
    """The smallest ``n_participants`` or ``n_groups`` of scenario ``s`` (3+ arms) at which
    ``decision`` after ``adjustment`` reaches ``target_power``; see the module docstring.

    Returns the keys of :func:`trialsim.power.from_scenario.analytic_solve` (``solve``,
    ``value``, ``power``, ``held``, ``arms``, ``warnings``, ...) and ``decision``,
    ``adjustment``, ``power_below`` (the power one below the answer)."""
    from trialsim.power.analytic_arms import scenario_parameters

    if unknown not in ARM_UNKNOWNS:
        raise UserError(
            f"--solve {unknown}: with {s.n_arms} arms solve for {' or '.join(ARM_UNKNOWNS)} "
            "(the other unknowns compare the first arm with the reference)"
        )
    if decision not in DECISIONS or adjustment not in ADJUSTMENTS:
        raise ValueError(
            f"decision {decision!r} / adjustment {adjustment!r}: choose from "
            f"{', '.join(DECISIONS)} / {', '.join(ADJUSTMENTS)}"
        )
    arms = s.arm_labels[1:]
    params = scenario_parameters(s, outcome)
    treated = [p["n_groups"] * p["group_size"] for p in params]
    n_control = params[0]["n_control"]
    base = {
        "n_participants": n_control + sum(treated),
        "n_groups": sum(p["n_groups"] for p in params),
    }[unknown]

    def power_at(value: float) -> float:
        c = from_irgt_parameters(arms, _scaled(params, value / base), alpha)
        return decision_power(c, decision, adjustment)

    completing = 1.0 - params[0]["dropout"]
    x_low = max(
        max(2.0 / p["n_groups"] for p in params),  # two groups in every active arm
        2.0 / (n_control * completing),  # two control completers
    )
    lowest = max(2, math.ceil(x_low * base * (1 + 1e-9)))
    value = solve_count(power_at, unknown, target_power, lowest=lowest)
    x = value / base
    solved = _scaled(params, x)
    per_arm = {s.arm_labels[0]: {"participants": n_control * x}}
    if solved[0].get("n_control_groups") is not None:
        per_arm[s.arm_labels[0]]["groups"] = solved[0]["n_control_groups"]
    for arm, p in zip(arms, solved, strict=True):
        per_arm[arm] = {"participants": p["n_groups"] * p["group_size"], "groups": p["n_groups"]}
    warnings = []
    if value == lowest:
        warnings.append(
            f"{unknown} = {value} is the smallest allowed value: the target is met at the "
            "lower edge of the range, so fewer may do"
        )
    return {
        "formula": "irgt",
        "solve": unknown,
        "value": value,
        "target_power": target_power,
        "power": power_at(value),
        "power_below": power_at(value - 1) if value > lowest else None,
        "decision": decision,
        "adjustment": adjustment,
        "meaning": (
            {"n_participants": "participants randomised in all", "n_groups": "treatment groups"}[
                unknown
            ]
            + f" over {s.n_arms} arms for {_DECISION_WORDS[decision]}, "
            + _ADJUSTMENT_WORDS[adjustment]
        ),
        "hold": "allocation",
        "held": _held_line(s, per_arm),
        "arms": per_arm,
        "warnings": warnings,
    }


def _held_line(s, per_arm: dict) -> str:
    shares = "/".join(f"{a:.2f}" for a in s.arm_allocation)

    def n(v: float) -> int:
        return math.ceil(v - 1e-9)

    parts = []
    for arm, a in per_arm.items():
        text = f"{arm} {n(a['participants'])}"
        if "groups" in a:
            text += f" in {a['groups']:.3g} groups"
        parts.append(text)
    total = sum(n(a["participants"]) for a in per_arm.values())
    return f"allocation ({shares}) and group sizes held: " + ", ".join(parts) + f" = {total} in all"
