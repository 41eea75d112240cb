"""Compare randomisation designs of one scenario side by side (``trialsim compare``).

Each design is the scenario with ``design.randomisation`` replaced (and design-specific
settings made feasible, see :func:`design_variant`). All designs are simulated with the same
root seed and scenario name, so components whose shapes they share (people's latent outcomes,
attendance, dropout, blinding draws) use the same random numbers: differences between designs
are not blurred by independent simulation noise (common random numbers).

For each design and analysis: simulated power, type-I error, bias (including the scenario's
assessor unblinding and expectancy biases), coverage, each with its Monte Carlo SE; the
analytic minimum detectable effect (MDE) and the groups/clusters and participants needed for
the target power (:mod:`trialsim.power.from_scenario`); months to full enrolment and staff
hours from the recruitment simulator when it is installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from trialsim.errors import UserError
from trialsim.scenario import DESIGNS, Scenario, ScenarioError, scenario_from_dict

#: The count each analytic formula solves for as "groups needed", with its unit.
COUNT_UNKNOWN = {
    "irgt": ("n_groups", "treatment groups"),
    "crt": ("n_clusters", "treated-arm clusters"),
    "stepped_wedge": ("clusters_per_step", "clusters per step"),
}

#: Person counts scaled together when solving for the participants needed.
_SCALED_COUNTS = ("n_groups", "n_control", "n_clusters", "clusters_per_step")


@dataclass(frozen=True)
class Comparison:
    """Rows (one per design and analysis) and notes on what could not be computed."""

    scenario: str
    outcome: str
    alpha: float
    target_power: float
    rows: list[dict]
    notes: list[str] = field(default_factory=list)


def design_variant(s: Scenario, design: str) -> tuple[Scenario, list[str]]:
    """The scenario under ``design``, validated, and notes on settings that had to change.

    Stepped wedge: ``n_steps`` is capped at the number of municipalities. Everything else is
    kept; a design the scenario cannot support (e.g. municipality randomisation with fewer
    than 4 municipalities) raises :class:`~trialsim.scenario.ScenarioError`.
    """
    if design not in DESIGNS:
        raise UserError(f"--designs: unknown design {design!r}; choose from {', '.join(DESIGNS)}")
    update: dict = {"randomisation": design}
    notes = []
    m = s.sites.n_municipalities
    if design == "stepped-wedge" and s.design.n_steps > m:
        update["n_steps"] = m
        notes.append(f"stepped-wedge: n_steps capped at {m} municipalities")
    raw = s.model_dump()
    raw["design"] = {**raw["design"], **update}
    return scenario_from_dict(raw, source=f"{s.name} as {design}"), notes


def compare_designs(
    scenario: Scenario,
    designs: Sequence[str] = DESIGNS,
    *,
    reps: int,
    seed: int,
    analyses: Sequence[str] = (),
    outcome: str | None = None,
    alpha: float = 0.05,
    target_power: float = 0.8,
    recruitment: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """Simulate every design of ``scenario`` on common random numbers; see the module doc.

    Example
    -------
    >>> c = compare_designs(load_scenario("scenarios/sft-19m.toml"), reps=500, seed=1)
    ...                                                                   # doctest: +SKIP
    """
    from trialsim.analyse.registry import default_analysis, get_analysis
    from trialsim.power.simulation import simulate_operating_characteristics

    outcome = outcome or scenario.primary
    if outcome not in scenario.outcomes:
        raise UserError(
            f"--outcome {outcome}: not in the scenario; choose {list(scenario.outcomes)}"
        )
    from trialsim.power.simulation import estimand_note

    notes: list[str] = []
    for name in analyses:
        get_analysis(name)
        note = estimand_note(scenario, outcome, name)
        if note is not None:
            notes.append(note)
    recruit = _recruitment_function(notes) if recruitment else None
    rows = []
    for design in designs:
        try:
            variant, design_notes = design_variant(scenario, design)
        except ScenarioError as exc:
            rows.append({"design": design, "analysis": None, "error": str(exc)})
            if progress is not None:
                progress(reps)
            continue
        notes += design_notes
        planning = analytic_planning(variant, outcome, target_power, alpha)
        if recruit is not None:
            planning.update(recruit(variant, reps, seed))
        choice = default_analysis(variant.structure, outcome)
        chosen = [(name, "--analysis") for name in analyses] or [(choice.name, choice.reason)]
        for name, reason in chosen:
            row = {
                "design": design,
                "analysis": name,
                "analysis_reason": reason,
                "default_analysis": choice.name,
            }
            try:
                ocs, _ = simulate_operating_characteristics(
                    variant,
                    [name],
                    reps=reps,
                    seed=seed,
                    outcome=outcome,
                    alpha=alpha,
                    progress=progress,
                )
                row.update(ocs[0].as_dict())
                row.pop("name", None)
                row["error"] = None
            except ValueError as exc:  # an analysis that does not fit the design
                row["error"] = str(exc)
            rows.append({**row, **planning, "alpha": alpha})
    return Comparison(scenario.name, outcome, alpha, target_power, rows, notes)


def analytic_planning(s: Scenario, outcome: str, target_power: float, alpha: float) -> dict:
    """Analytic power, MDE, groups and participants needed; "n/a" reasons when unavailable."""
    from trialsim.power.from_scenario import analytic_parameters, analytic_power, analytic_solve

    out: dict = {}
    try:
        formula, params = analytic_parameters(s, outcome)
        out["analytic_power"] = analytic_power(s, outcome)["power"]
    except ValueError as exc:
        reason = str(exc)
        return {
            "analytic_power": None,
            "mde": None,
            "groups_needed": None,
            "participants_needed": None,
            "analytic_note": reason,
        }
    notes = []
    try:
        out["mde"] = float(analytic_solve(s, "effect", target_power, outcome)["value"])
    except ValueError as exc:
        out["mde"] = None
        notes.append(f"MDE: {exc}")
    unknown, unit = COUNT_UNKNOWN.get(formula, (None, None))
    out["groups_unit"] = unit
    try:
        if unknown is None:
            raise UserError(f"no count to solve for in the {formula} formula")
        solved = analytic_solve(s, unknown, target_power, outcome, alpha=alpha)
        out["groups_needed"] = int(solved["value"])
        # participants from the same solve (controls scaled with the treated arm), so the
        # row's groups and participants describe one design
        out["participants_needed"] = solved_participants(solved)
        out["held"] = solved["held"]
        notes += solved["warnings"]
    except ValueError as exc:
        out["groups_needed"] = None
        out["participants_needed"] = None
        notes.append(f"groups and participants needed: {exc}")
    out["analytic_note"] = "; ".join(notes) or None
    return out


def solved_participants(solved: dict) -> int:
    """Participants randomised at a solved count: whole clusters (rounded up) times their
    size for the cluster designs, the arms' totals rounded up otherwise."""
    arms = solved["arms"]
    if solved["formula"] == "crt":
        size = arms["treated"]["participants"] / arms["treated"]["clusters"]
        clusters = sum(math.ceil(a["clusters"] - 1e-9) for a in arms.values())
        return int(math.ceil(clusters * size - 1e-9))
    return int(sum(math.ceil(a["participants"] - 1e-9) for a in arms.values()))


def participants_needed(
    formula: str, params: dict, n_participants: int, target_power: float, alpha: float = 0.05
) -> int:
    """Participants randomised for ``target_power`` when every count grows in proportion.

    Groups, controls and clusters are multiplied by one factor k (group and cluster sizes
    stay as in the scenario); k solves power(k) = target on the continuous relaxation
    (``brentq``) and the answer is ``ceil(k * n_participants)``, where ``n_participants``
    is the number randomised in the design that ``params`` describe. A stepped wedge adds
    whole clusters per step instead (k = clusters / clusters in the scenario).
    """
    from trialsim.power import analytic

    functions = {
        "irgt": analytic.power_irgt,
        "crt": analytic.power_crt,
        "stepped_wedge": analytic.power_stepped_wedge,
    }
    if formula not in functions or params.get("treatment_matrix") is not None:
        raise UserError(f"proportional scaling is not defined for the {formula} formula")
    scaled = [k for k in _SCALED_COUNTS if k in params]
    power = functions[formula]
    if "clusters_per_step" in scaled:  # builds a design matrix: whole clusters only
        return _participants_whole_clusters(power, params, n_participants, target_power, alpha)

    def shortfall(k: float) -> float:
        p = dict(params, alpha=alpha, **{name: params[name] * k for name in scaled})
        return float(power(**p)) - target_power

    low = max(2.0 / min(params[k] for k in scaled), 1e-3) * 1.01
    if shortfall(low) >= 0:
        return int(math.ceil(low * n_participants))
    high = 1.0
    while shortfall(high) < 0:
        high *= 2
        if high > 1e5:
            raise UserError(f"power {target_power} is out of reach by adding participants")
    k = optimize.brentq(shortfall, low, high, xtol=1e-6)
    return int(math.ceil(k * n_participants))


def _participants_whole_clusters(power, params, n_participants, target_power, alpha) -> int:
    """Stepped wedge: the fewest whole clusters per step reaching the target (cluster-period
    sizes fixed), found by doubling then integer bisection; participants grow in proportion."""
    c0 = int(params["clusters_per_step"])

    def enough(c: int) -> bool:
        return float(power(**dict(params, alpha=alpha, clusters_per_step=c))) >= target_power

    high = 1
    while not enough(high):
        high *= 2
        if high > 10**5:
            raise UserError(f"power {target_power} is out of reach by adding clusters")
    low = high // 2  # enough(low) is False unless low == 0
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return int(math.ceil(n_participants * high / c0))


def _recruitment_function(notes: list[str]):
    """The recruitment simulator if it is installed, else None and a note."""
    try:
        from trialsim.simulate.recruitment import simulate_recruitment
    except ImportError:
        notes.append(
            "months to enrolment and staff hours: the recruitment simulator "
            "(trialsim.simulate.recruitment) is not available in this installation"
        )
        return None

    def recruit(s: Scenario, reps: int, seed: int) -> dict:
        try:
            summary = simulate_recruitment(s, reps, seed=seed).summary()
        except UserError as exc:  # ScenarioError is one
            return {"recruitment_note": str(exc)}
        out = {}
        for key in ("months_to_full_enrolment", "staff_hours"):
            stats = summary.get(key) or {}
            for q in ("median", "p10", "p90"):
                value = stats.get(q)
                out[f"{key}_{q}"] = float(value) if value is not None else None
        return out

    return recruit


# ---- presentation ----------------------------------------------------------------------------

TABLE_COLUMNS = (
    "design",
    "analysis",
    "analysis_reason",
    "reps",
    "power",
    "power_mcse",
    "type1",
    "type1_mcse",
    "bias",
    "bias_mcse",
    "coverage",
    "coverage_mcse",
    "failures",
    "analytic_power",
    "mde",
    "groups_needed",
    "groups_unit",
    "participants_needed",
    "months_to_full_enrolment_median",
    "months_to_full_enrolment_p10",
    "months_to_full_enrolment_p90",
    "staff_hours_median",
    "staff_hours_p10",
    "staff_hours_p90",
    "analytic_note",
    "recruitment_note",
    "error",
)


def comparison_records(c: Comparison) -> list[dict]:
    """Tidy rows with a fixed set of columns (missing values as None)."""
    return [{k: r.get(k) for k in TABLE_COLUMNS} for r in c.rows]


def format_comparison(c: Comparison) -> str:
    """A terminal table: ± is one Monte Carlo SE; n/a reasons are listed below the table."""

    def pm(v, e, d=3):
        if v is None or _isnan(v):
            return "n/a"
        return f"{v:.{d}f} ± {e:.{d}f}" if e is not None and not _isnan(e) else f"{v:.{d}f}"

    def num(v, fmt="{:.0f}"):
        return "n/a" if v is None or _isnan(v) else fmt.format(v)

    has_recruitment = any("months_to_full_enrolment_median" in r for r in c.rows)
    head = ["design", "analysis", "power", "type I", "bias", "MDE", "groups", "particip."]
    if has_recruitment:
        head += ["months", "staff h"]
    body, footnotes = [], []
    for r in c.rows:
        if r.get("error") and r.get("power") is None:
            body.append(
                [r["design"], r.get("analysis") or "-", "n/a", "n/a", "n/a", "", "", ""]
                + (["", ""] if has_recruitment else [])
            )
            footnotes.append(f"{r['design']}: {r['error']}")
            continue
        line = [
            r["design"],
            r["analysis"],
            pm(r.get("power"), r.get("power_mcse")),
            pm(r.get("type1"), r.get("type1_mcse")),
            pm(r.get("bias"), r.get("bias_mcse"), 2),
            num(r.get("mde"), "{:.2f}"),
            num(r.get("groups_needed")),
            num(r.get("participants_needed")),
        ]
        if has_recruitment:
            line += [
                num(r.get("months_to_full_enrolment_median"), "{:.1f}"),
                num(r.get("staff_hours_median")),
            ]
        body.append(line)
        for key in ("analytic_note", "recruitment_note"):
            if r.get(key):
                note = f"{r['design']}: {r[key]}"
                if note not in footnotes:
                    footnotes.append(note)
    widths = [
        max(len(h), *(len(b[j]) for b in body)) if body else len(h) for j, h in enumerate(head)
    ]
    lines = [
        f"{c.scenario}: outcome {c.outcome}, alpha {c.alpha}; MDE (ITT, outcome units), groups "
        f"and participants for {c.target_power:.0%} power are analytic",
        "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)),
    ]
    lines.append("-" * len(lines[1]))
    lines += ["  ".join(x.rjust(w) for x, w in zip(b, widths, strict=True)) for b in body]
    reps = next((r["reps"] for r in c.rows if r.get("reps")), None)
    if reps:
        lines.append(f"({reps} replicate trials per design on common random numbers; ± one MCSE)")
    units = {r["design"]: r.get("groups_unit") for r in c.rows if r.get("groups_unit")}
    if units:
        lines.append("(groups: " + ", ".join(f"{u} ({d})" for d, u in units.items()) + ")")
    if has_recruitment:
        lines.append(
            "(months: median months to full enrolment; staff h: median staff hours; "
            "10th/90th percentiles in compare.csv)"
        )
    lines += analysis_lines(c.rows)
    lines += [f"n/a {f}" for f in footnotes] + [f"note: {n}" for n in c.notes]
    return "\n".join(lines)


def analysis_lines(rows: list[dict]) -> list[str]:
    """Which analysis each design got and why: the default rule's line
    (:meth:`~trialsim.analyse.registry.DefaultChoice.line`), or ``--analysis``."""
    from trialsim.analyse.registry import DefaultChoice

    lines = []
    for r in rows:
        if not r.get("analysis"):
            continue
        if r.get("analysis_reason") == "--analysis":
            line = (
                f"analysis: {r['analysis']} (chosen with --analysis; the default is "
                f"{r.get('default_analysis')})"
            )
        else:
            line = DefaultChoice(r["analysis"], r.get("analysis_reason") or "").line()
        line = f"{r['design']}: {line}"
        if line not in lines:
            lines.append(line)
    return lines


def _isnan(v) -> bool:
    return isinstance(v, float | np.floating) and math.isnan(v)
