"""How many groups of what size a budget buys, and which choice gives the most power.

Design: the scenario's own, when its analytic formula is the partially nested one
(individually randomised group treatment, or randomised cohorts that are one group each; two
arms, groups in the treated arm only); other structures are refused with the design named
(:func:`irgt_power_function`). With G groups of m participants in the treated arm, allocation
share a to treatment, and g groups per trainer:

    controls   n_C = round(G m (1 - a) / a)
    trainers   T   = ceil(G / g)
    cost       C(G, m) = G c_group + (G m + n_C) c_participant + T c_trainer

Power is :func:`trialsim.power.analytic.power_irgt` with the scenario's ICC, SD, ITT effect,
group-size CV and completion (:func:`trialsim.power.from_scenario.analytic_parameters`).

Optimisation: for a fixed group size, power increases with G (the treated-arm variance
(sigma_g^2 + sigma_e^2/m)/G and the control variance sigma_e^2/n_C both fall and the
Satterthwaite df rise), and the cost increases with G, so the best affordable design for each
m spends the budget on the largest affordable G; the optimum is the best of these over m.
Cost per group versus per participant sets the trade-off, as in Moerbeek & Wong (2008),
Stat Med 27:3035, and Raudenbush (1997), Psychol Methods 2:173 (optimal cluster size
sqrt(c_group / c_participant * (1 - icc) / icc) for cluster designs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from trialsim.errors import UserError
from trialsim.scenario import Scenario


@dataclass(frozen=True)
class Costs:
    """Costs in one currency: per treatment group run, per randomised participant (both arms,
    e.g. recruitment and assessment), per trainer (training and supervision)."""

    per_group: float
    per_participant: float
    per_trainer: float = 0.0

    def __post_init__(self) -> None:
        for name in ("per_group", "per_participant", "per_trainer"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"--cost-{name.removeprefix('per_')} must be >= 0, got {value}")
        if self.per_group + self.per_participant + self.per_trainer <= 0:
            raise UserError("at least one cost must be positive, e.g. --cost-participant 5000")


def n_control(n_groups: int, group_size: int, allocation_treated: float) -> int:
    """Controls randomised alongside G groups of m treated (allocation share a to treatment)."""
    return int(
        math.floor(n_groups * group_size * (1 - allocation_treated) / allocation_treated + 0.5)
    )


def design_cost(
    n_groups: int,
    group_size: int,
    costs: Costs,
    *,
    allocation_treated: float = 0.5,
    groups_per_trainer: int = 2,
) -> float:
    """Total cost C(G, m) of the design (see the module docstring)."""
    participants = n_groups * group_size + n_control(n_groups, group_size, allocation_treated)
    trainers = math.ceil(n_groups / groups_per_trainer)
    return (
        n_groups * costs.per_group
        + participants * costs.per_participant
        + trainers * costs.per_trainer
    )


def max_affordable_groups(
    budget: float,
    group_size: int,
    costs: Costs,
    *,
    allocation_treated: float = 0.5,
    groups_per_trainer: int = 2,
) -> int:
    """Largest G with C(G, m) <= budget (0 if not even one group is affordable)."""
    kw = dict(allocation_treated=allocation_treated, groups_per_trainer=groups_per_trainer)
    per_group = (
        costs.per_group
        + costs.per_participant * group_size / allocation_treated
        + costs.per_trainer / groups_per_trainer
    )
    g = max(int(budget // per_group), 0)  # cost is about per_group * G; correct the rounding
    while g > 0 and design_cost(g, group_size, costs, **kw) > budget:
        g -= 1
    while design_cost(g + 1, group_size, costs, **kw) <= budget:
        g += 1
    return g


def irgt_power_function(s: Scenario, outcome: str | None = None):
    """power(n_groups, group_size, n_control) of the scenario's own analytic formula.

    Only trials whose formula is the partially nested one (``irgt``: people, or cohorts that
    are one delivery group each, randomised to two arms, groups in the treated arm only) are
    optimised; any other structure raises ``ValueError`` naming the design.
    """
    from trialsim.power.analytic import power_irgt
    from trialsim.power.from_scenario import analytic_parameters

    st = s.structure
    cannot = f"budget cannot optimise {s.name}, a {st.label} design"
    if st.n_arms != 2:
        raise UserError(
            f"{cannot} with {st.n_arms} arms ({', '.join(st.arms)}): it optimises groups of "
            "one treated arm against controls; run it on a two-arm variant"
        )
    if not st.partially_nested:
        raise UserError(
            f"{cannot} with delivery groups {st.groups_description}: it optimises groups in "
            "the treated arm only (controls not in groups)"
        )
    formula, params = analytic_parameters(s, outcome)
    if formula != "irgt":
        unit = f"clusters ({st.cluster})" if st.cluster_randomised else "people"
        raise UserError(
            f"{cannot} (randomised: {unit}; analytic formula {formula}): it optimises the "
            "number and size of treatment groups of the partially nested formula (people, or "
            "cohorts that are one group each, randomised); for this design use "
            "'trialsim power --method analytic --solve ...' or 'trialsim compare'"
        )
    fixed = {k: v for k, v in params.items() if k not in ("n_groups", "group_size", "n_control")}

    def power(n_groups, group_size, n_control_):
        return float(
            power_irgt(n_groups=n_groups, group_size=group_size, n_control=n_control_, **fixed)
        )

    return power


def _feasible(n_groups: int, n_c: int, dropout: float) -> bool:
    return n_groups >= 2 and n_c * (1 - dropout) > 1


def optimise_budget(
    s: Scenario,
    budget: float,
    costs: Costs,
    *,
    group_sizes: Sequence[int] | None = None,
    outcome: str | None = None,
) -> tuple[dict, pd.DataFrame]:
    """The most powerful affordable (groups, group size) and the best design per group size.

    ``group_sizes`` defaults to the scenario's ``groups.min_size`` .. ``groups.max_size``.
    Returns ``(best, curve)``: ``best`` a dict (n_groups, group_size, n_control, trainers,
    participants, cost, power), ``curve`` one such row per group size that affords 2 groups.
    """
    if not (math.isfinite(budget) and budget > 0):
        raise UserError(f"--budget must be a positive amount, got {budget}")
    a = s.design.allocation_treated
    gpt = s.groups.groups_per_trainer
    sizes = list(group_sizes or range(s.groups.min_size, s.groups.max_size + 1))
    if not sizes or min(sizes) < 1:
        raise UserError(f"group sizes must be whole numbers >= 1, got {sizes}")
    power = irgt_power_function(s, outcome)
    dropout = 1 - s.dropout.completion_target
    rows = []
    for m in sizes:
        g = max_affordable_groups(budget, m, costs, allocation_treated=a, groups_per_trainer=gpt)
        n_c = n_control(g, m, a)
        if not _feasible(g, n_c, dropout):
            continue
        rows.append(_row(g, m, n_c, costs, a, gpt, power))
    if not rows:
        cheapest = design_cost(2, min(sizes), costs, allocation_treated=a, groups_per_trainer=gpt)
        raise UserError(
            f"--budget {budget:g} does not buy 2 groups of {min(sizes)} with their controls "
            f"(that costs {cheapest:g}); raise the budget or lower the costs"
        )
    curve = pd.DataFrame(rows)
    best = max(rows, key=lambda r: (r["power"], -r["cost"]))
    return best, curve


def _row(g, m, n_c, costs, a, gpt, power) -> dict:
    return {
        "group_size": m,
        "n_groups": g,
        "n_control": n_c,
        "trainers": math.ceil(g / gpt),
        "participants": g * m + n_c,
        "cost": design_cost(g, m, costs, allocation_treated=a, groups_per_trainer=gpt),
        "power": power(g, m, n_c),
    }
