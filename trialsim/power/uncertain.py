"""Sample size when the ICC (or the effect) is uncertain.

Two answers for a planner unsure of the group ICC:

* :func:`solve_over_range` -- the solved count at each ICC of a range (a table: how the
  answer moves between, say, 0.02 and 0.12);
* :func:`solve_averaged` -- the smallest count whose power *averaged over a design prior*
  (e.g. ``icc=beta:2,30`` for the scenario's ``groups.icc_group``, or ``effect=normal:7,2``
  for the primary outcome's full-attendance effect) reaches the target: expected power, the
  frequentist half of assurance (O'Hagan, Stevens & Campbell 2005, Pharm Stat 4:187).

The prior is integrated on ``nodes`` equal-probability points (the midpoints of its quantile
bins), deterministic and accurate to a few 1e-4 in power for smooth priors. Counts are those of
the individually randomised group design (``n_groups``, ``group_size``, ``n_participants``),
solved with the allocation ratio held, as :func:`~trialsim.power.from_scenario.analytic_solve`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from trialsim.errors import UserError
from trialsim.scenario import Scenario

#: Quantities a prior or range may cover, and where they live in the scenario.
UNCERTAIN = ("icc", "effect")


def with_value(s: Scenario, key: str, value: float) -> Scenario:
    """The scenario with the group ICC (``icc``: ``groups.icc_group``) or the primary
    outcome's full-attendance effect (``effect``) set to ``value``."""
    if key == "icc":
        return s.model_copy(update={"groups": s.groups.model_copy(update={"icc_group": value})})
    if key == "effect":
        o = s.outcomes[s.primary].model_copy(update={"effect": value})
        return s.model_copy(update={"outcomes": {**s.outcomes, s.primary: o}})
    raise UserError(f"{key}: choose one of {', '.join(UNCERTAIN)}")


def prior_nodes(prior, nodes: int = 15) -> np.ndarray:
    """Equal-probability points of a :class:`~trialsim.bayes.distributions.DesignPrior`."""
    f, p = prior.family, prior.params
    if f == "fixed":
        return np.array([p[0]])
    dist = {
        "normal": lambda: stats.norm(p[0], p[1]),
        "lognormal": lambda: stats.lognorm(s=p[1], scale=math.exp(p[0])),
        "beta": lambda: stats.beta(p[0], p[1]),
        "gamma": lambda: stats.gamma(p[0], scale=1.0 / p[1]),
        "uniform": lambda: stats.uniform(p[0], p[1] - p[0]),
    }[f]()
    return dist.ppf((np.arange(nodes) + 0.5) / nodes)


def solve_over_range(s: Scenario, key: str, values, unknown: str, target: float, **kw) -> list:
    """``analytic_solve`` at each value of ``key``: one row per value."""
    from trialsim.power.from_scenario import analytic_solve

    rows = []
    for v in values:
        out = analytic_solve(with_value(s, key, float(v)), unknown, target, **kw)
        total = sum(a["participants"] for a in out["arms"].values())
        rows.append(
            {
                key: float(v),
                "value": out["value"],
                "participants": int(math.ceil(total - 1e-9)),
                "power": out["power"],
                "warnings": out["warnings"],
            }
        )
    return rows


def solve_averaged(
    s: Scenario,
    key: str,
    prior,
    unknown: str,
    target: float,
    *,
    alpha: float = 0.05,
    nodes: int = 15,
) -> dict:
    """Smallest count whose power averaged over ``prior`` for ``key`` reaches ``target``."""
    from trialsim.power.analytic import power_irgt
    from trialsim.power.from_scenario import _arm_totals, _scaling, analytic_parameters
    from trialsim.power.solve import solve_count

    points = prior_nodes(prior, nodes)
    if key == "icc" and (points.min() < 0 or points.max() >= 1):
        raise UserError(f"icc prior {prior.text}: its values must lie in [0, 1)")
    scalings = []
    for v in points:
        formula, params = analytic_parameters(with_value(s, key, float(v)))
        if formula != "irgt" or unknown not in ("n_groups", "group_size", "n_participants"):
            raise UserError(
                "power averaged over a prior is solved for n_groups, group_size or "
                "n_participants of an individually randomised group design"
            )
        params["alpha"] = alpha
        scalings.append(_scaling(formula, params, unknown, "allocation"))

    def mean_power(x: float) -> float:
        return float(np.mean([power_irgt(**sc["params"](x)) for sc in scalings]))

    lowest = 2 if unknown == "n_groups" else 1
    value = solve_count(mean_power, unknown, target, lowest=lowest)
    arms = _arm_totals("irgt", scalings[0]["params"](value))
    total = sum(a["participants"] for a in arms.values())
    return {
        "key": key,
        "prior": prior.text,
        "solve": unknown,
        "value": value,
        "target_power": target,
        "expected_power": mean_power(value),
        "power_at_prior_mean": float(
            power_irgt(
                **_scaling(*_params_at(s, key, prior.mean, alpha), unknown, "allocation")["params"](
                    value
                )
            )
        ),
        "participants": int(math.ceil(total - 1e-9)),
        "nodes": len(points),
    }


def _params_at(s: Scenario, key: str, value: float, alpha: float):
    from trialsim.power.from_scenario import analytic_parameters

    formula, params = analytic_parameters(with_value(s, key, float(value)))
    return formula, dict(params, alpha=alpha)


def format_range(rows: list, key: str, unknown: str, target: float) -> list[str]:
    lines = [f"{unknown} for power {target:g} across {key}:", f"{key:>8}{unknown:>14}{'in all':>9}"]
    for r in rows:
        lines.append(f"{r[key]:>8.3g}{r['value']:>14}{r['participants']:>9}")
        lines += [f"         warning: {w}" for w in r["warnings"]]
    return lines


def format_averaged(out: dict) -> str:
    return (
        f"{out['solve']} = {out['value']} ({out['participants']} in all) gives power "
        f"{out['expected_power']:.3f} averaged over {out['key']} ~ {out['prior']} "
        f"({out['nodes']} equal-probability points; target {out['target_power']:g}); "
        f"power at the prior mean {out['power_at_prior_mean']:.3f}"
    )
