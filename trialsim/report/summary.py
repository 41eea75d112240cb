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
    st = s.structure
    shares = ", ".join(f"{a} {p:.0%}" for a, p in zip(st.arms, st.allocation, strict=True))
    lines = [
        f"{source}: valid scenario '{s.name}'",
        f"  {s.description}" if s.description else None,
        f"design      {d.randomisation} randomisation; arms {shares} "
        f"(reference {st.reference})" + (f", {st.n_periods - 1} steps" if st.n_periods > 1 else ""),
        f"sites       {s.sites.n_municipalities} municipalities, {s.n_participants} participants "
        f"({min(s.sites.participants)}-{max(s.sites.participants)} each)",
        f"groups      up to {n_groups} groups of {g.mean_size:g} (CV {g.cv_size:g}, "
        f"{g.min_size}-{g.max_size}); ICC group {g.icc_group:g}, trainer {g.icc_trainer:g}, "
        f"municipality {g.icc_municipality:g}; delivery groups {st.groups_description}",
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
        effects = "/".join(f"{e:+g}" for e in s.arm_effects(name))
        if isinstance(o, BoundedOutcome):
            what = f"{o.lower:g}-{o.upper:g}, mean {o.mean:g}, SD {o.sd:g}, effect {effects}"
        elif isinstance(o, BinaryOutcome):
            what = f"binary, prevalence {o.prevalence:g}, odds ratio {effects}"
        elif o.type == "continuous":
            what = f"continuous, mean {o.mean:g}, SD {o.sd:g}, effect {effects}"
        else:
            what = f"count, mean {o.mean:g}, rate ratio {effects}"
        better = "" if o.better == "higher" else ", lower is better"
        lines.append(f" {star}{name:<14} {o.rater:<9} {what}{better}")
    for name, c in s.covariates.items():
        lines.append(f"covariate   {name}: {c.type}")
    lines.append("  (* primary; effects at full attendance)")
    return "\n".join(line for line in lines if line is not None)
