"""One-screen text summary of a scenario (``trialsim validate``)."""

from __future__ import annotations

import numpy as np

from trialsim.power.simulation import mean_dose_factor
from trialsim.scenario import (
    BinaryOutcome,
    BoundedOutcome,
    Scenario,
    groups_in_cell,
    treated_cell_sizes,
)
from trialsim.simulate.trial import dropout_intercept


def scenario_summary(s: Scenario, *, source: str) -> str:
    d, g, a, dr, b = s.design, s.groups, s.attendance, s.dropout, s.blinding
    cells = treated_cell_sizes(s)
    n_groups = int(np.sum(groups_in_cell(np.asarray(cells), g.mean_size)))
    lines = [
        f"{source}: valid scenario '{s.name}'",
        f"  {s.description}" if s.description else None,
        f"design      {d.randomisation} randomisation, {d.allocation_treated:.0%} to treatment"
        + (f", {d.n_steps} steps" if d.randomisation == "stepped-wedge" else ""),
        f"sites       {s.sites.n_municipalities} municipalities, {s.n_participants} participants "
        f"({min(s.sites.participants)}-{max(s.sites.participants)} each)",
        f"groups      up to {n_groups} groups of {g.mean_size:g} (CV {g.cv_size:g}, "
        f"{g.min_size}-{g.max_size}); ICC group {g.icc_group:g}, trainer {g.icc_trainer:g}, "
        f"municipality {g.icc_municipality:g}",
        f"attendance  {d.sessions_offered} sessions, mean {a.mean_fraction:.0%} attended, "
        f"dose-response {a.dose_response} (mean dose factor "
        f"{mean_dose_factor(s):.2f}), self-selection {a.prognosis_log_odds:g} log-odds/SD",
        f"visits      months {', '.join(f'{m:g}' for m in d.visit_months)}",
        f"dropout     {dr.mechanism}, {dr.completion_target:.0%} complete the last visit "
        f"(per-visit intercept {dropout_intercept(s):.2f})",
        f"blinding    assessor unblinded with p={b.assessor_unblinded_prob:g}, bias "
        f"{b.assessor_bias:g} on clinician-rated outcomes",
        "outcomes",
    ]
    for name, o in s.outcomes.items():
        star = "*" if name == s.primary else " "
        if isinstance(o, BoundedOutcome):
            what = f"{o.lower:g}-{o.upper:g}, mean {o.mean:g}, SD {o.sd:g}, effect {o.effect:+g}"
        elif isinstance(o, BinaryOutcome):
            what = f"binary, prevalence {o.prevalence:g}, odds ratio {o.odds_ratio:g}"
        else:
            what = f"count, mean {o.mean:g}, rate ratio {o.rate_ratio:g}"
        lines.append(f" {star}{name:<14} {o.rater:<9} {what}")
    lines.append("  (* primary; effects at full attendance)")
    return "\n".join(line for line in lines if line is not None)
