"""Analytic power for a scenario: map its nature and design onto the closed-form formulas.

Individually randomised (and waitlist) scenarios use the partially nested (IRGT) formula of
:func:`trialsim.power.analytic.power_irgt`, cluster designs (cohort, municipality) the
cluster-randomised formula. The mapping, on the outcome's scale:

* individual SD within municipality: sd * sqrt(1 - icc_municipality) (strata are fixed);
* ANCOVA on baseline removes the share rho^2 of the *individual* variance only (group and
  trainer effects arise after baseline and are not predicted by it): residual variance
  sd_e^2 (1 - rho^2);
* group-level variance (group + trainer) from the simulator's definition of the ICCs, so the
  effective ICC is group variance / (group variance + adjusted individual variance);
* attrition: the completion target; the effect: the ITT effect at the final visit
  (effect x mean dose factor), see :func:`trialsim.power.simulation.true_effect`.

Approximations (checked against simulation in the tests): dropout treated as MCAR, trainers
running several groups treated as independent groups, scale rounding ignored.
"""

from __future__ import annotations

import numpy as np

from trialsim.power.analytic import power_crt, power_irgt
from trialsim.power.solve import SOLVABLE, solve_power
from trialsim.scenario import BoundedOutcome, Scenario, groups_in_cell
from trialsim.simulate.outcomes import cluster_scales


def analytic_parameters(s: Scenario, outcome: str | None = None) -> tuple[str, dict]:
    """The formula ('irgt' or 'crt') and its arguments for ``outcome`` of scenario ``s``."""
    from trialsim.power.simulation import true_effect

    outcome = outcome or s.primary
    o = s.outcomes[outcome]
    if not isinstance(o, BoundedOutcome):
        raise ValueError(
            f"analytic power covers continuous (bounded) outcomes; {outcome!r} is "
            f"{o.type}: use --method simulation"
        )
    g, d = s.groups, s.design
    s_group, s_trainer = cluster_scales(g)
    rho = s.correlation.baseline_followup
    var_individual = o.sd**2 * (1 - g.icc_municipality) * (1 - rho**2)
    var_group = o.sd**2 * (s_group**2 + s_trainer**2)
    icc = var_group / (var_group + var_individual)
    common = dict(
        effect=true_effect(s, outcome, "itt"),
        sd=float(np.sqrt(var_individual)),
        dropout=1.0 - s.dropout.completion_target,
    )
    sizes = np.asarray(s.sites.participants)
    if d.randomisation in ("individual", "waitlist"):
        n_treated = np.floor(sizes * d.allocation_treated + 0.5)
        n_groups = int(groups_in_cell(n_treated, g.mean_size).sum())
        return "irgt", dict(
            common,
            n_groups=n_groups,
            group_size=float(n_treated.sum() / n_groups),
            n_control=int((sizes - n_treated).sum()),
            icc=float(icc),
            cv_group_size=g.cv_size,
        )
    if d.randomisation == "cohort":
        n_cohorts = groups_in_cell(sizes, g.mean_size)
        return "crt", dict(
            common,
            n_clusters=int(n_cohorts.sum() // 2),
            cluster_size=float(sizes.sum() / n_cohorts.sum()),
            icc=float(icc),
            cv_cluster_size=g.cv_size,
        )
    raise ValueError(
        f"analytic power for {d.randomisation!r} randomisation from a scenario is not "
        "available yet; use --method simulation"
    )


def analytic_power(s: Scenario, outcome: str | None = None) -> dict:
    """Power (and the formula's inputs) for the scenario's primary or named outcome."""
    design, params = analytic_parameters(s, outcome)
    power = (power_irgt if design == "irgt" else power_crt)(**params)
    return {"formula": design, "power": float(power), **params}


def analytic_solve(s: Scenario, unknown: str, target_power: float, outcome: str | None = None):
    """Solve the scenario's formula for ``unknown`` at ``target_power`` (others as set)."""
    design, params = analytic_parameters(s, outcome)
    solvable = [k for k in SOLVABLE[design] if k != "power"]
    if unknown not in solvable:
        raise ValueError(f"--solve {unknown}: the {design} formula solves for one of {solvable}")
    params = dict(params, power=target_power, **{unknown: None})
    value = solve_power(design, **params)
    return {"formula": design, "solve": unknown, "value": value, "target_power": target_power}
