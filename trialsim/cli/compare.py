"""`trialsim compare` (designs side by side) and `trialsim budget` (groups vs group size)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from trialsim.cli.common import (
    FiniteFloat,
    alpha_option,
    emit,
    force_option,
    format_option,
    friendly,
    outcome_option,
    reps_option,
    scenario_argument,
    seed_option,
    set_option,
    target_power_option,
)
from trialsim.cli.common import out_option as _out_option
from trialsim.cli.common import refuse_overwrite_in as _refuse
from trialsim.report.provenance import PROVENANCE_FILE
from trialsim.scenario import DESIGNS, load_scenario

COMPARE_FILES = ("compare.csv", "compare.json", "compare.png", PROVENANCE_FILE)
BUDGET_FILES = ("budget.csv", "budget.json", "budget.png", PROVENANCE_FILE)


def out_option(command: str, files: tuple[str, ...]):
    return _out_option("folder", f"for {', '.join(files)} (default: results/<scenario>/{command}).")


def _designs(ctx, param, value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in DESIGNS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown design(s) {unknown or value!r}; use a comma-separated list of "
            f"{', '.join(DESIGNS)}"
        )
    return list(dict.fromkeys(names))


@click.command()
@scenario_argument
@click.option(
    "--designs",
    default=",".join(DESIGNS),
    show_default=True,
    callback=_designs,
    help="Comma-separated randomisation designs to compare.",
)
@click.option(
    "--analysis",
    "analyses",
    multiple=True,
    metavar="NAME",
    help="Analysis for every design (repeatable; default: the one rule on each design's "
    "trial structure and the outcome, printed with the results).",
)
@outcome_option
@reps_option(1000)
@seed_option
@alpha_option
@target_power_option("Power for the MDE, groups and participants needed.")
@out_option("compare", COMPARE_FILES)
@force_option
@format_option
@set_option
@friendly
def compare(
    scenario,
    designs,
    analyses,
    outcome,
    reps,
    seed,
    alpha,
    target_power,
    out,
    force,
    fmt,
    csv_dialect,
    overrides,
):
    """Compare randomisation designs of SCENARIO side by side on common random numbers.

    For each design (the scenario with design.randomisation replaced): simulated power,
    type-I error, bias (with the scenario's assessor unblinding) and coverage with Monte
    Carlo SEs; the analytic minimum detectable effect (ITT, outcome units) and the groups or
    clusters and participants needed for the target power ("n/a" with the reason when no
    formula covers the design); months to full enrolment and staff hours when the
    recruitment simulator is installed. Writes compare.csv, compare.json, compare.png (power,
    type-I error and bias per design with ±1.96 MCSE intervals) and provenance.json.

    Examples:

    \b
      trialsim compare scenarios/sft-19m.toml --reps 1000 --force

    \b
      trialsim compare scenarios/sft-19m.toml --designs individual,cohort --analysis cr2 \\
        --out results/two-designs --force
    """
    from trialsim.design.compare import compare_designs, comparison_records, format_comparison
    from trialsim.design.figures import compare_figure
    from trialsim.files import write_json
    from trialsim.report.progress import progress_bar
    from trialsim.report.provenance import build_provenance, write_provenance

    s = load_scenario(scenario, overrides)
    out = out or Path("results") / s.name / "compare"
    _refuse(out, COMPARE_FILES, force)
    with progress_bar(reps * len(designs) * max(len(analyses), 1), "comparing designs") as advance:
        result = compare_designs(
            s,
            designs,
            reps=reps,
            seed=seed,
            analyses=analyses,
            outcome=outcome,
            alpha=alpha,
            target_power=target_power,
            progress=advance,
        )
    records = comparison_records(result)
    provenance = build_provenance(
        command="compare",
        scenario_path=scenario,
        scenario=s,
        seed=seed,
        overrides=list(overrides),
        designs=designs,
        analyses=list(analyses),
        reps=reps,
        outcome=result.outcome,
        alpha=alpha,
        target_power=target_power,
    )
    import pandas as pd

    from trialsim.data import write_table

    write_table(pd.DataFrame(records), out / "compare.csv", csv_dialect=csv_dialect)
    summary = {**dataclasses.asdict(result), "rows": records}
    write_json(out / "compare.json", summary)
    compare_figure(result.rows, out / "compare.png", title=f"{s.name}: {result.outcome} by design")
    write_provenance(out, provenance)
    emit(
        fmt,
        text=lambda: format_comparison(result),
        record={**summary, "provenance": provenance},
        rows=pd.DataFrame(records),
        csv_dialect=csv_dialect,
    )
    click.echo(f"outputs in {out}/", err=True)


def _sizes(ctx, param, value: str | None):
    if value is None:
        return None
    from trialsim.design.grid import parse_vary

    try:
        values = parse_vary(f"sizes={value}").values
    except ValueError:
        values = None
    if not values or not all(isinstance(v, int) and v >= 1 for v in values):
        raise click.BadParameter(f"{value!r}: give whole numbers, e.g. 4,6,8 or 3:10:8")
    return list(values)


@click.command()
@scenario_argument
@click.option(
    "--budget", "budget", required=True, type=FiniteFloat(), help="Total budget (currency units)."
)
@click.option("--cost-group", required=True, type=FiniteFloat(0), help="Cost of running one group.")
@click.option(
    "--cost-participant",
    required=True,
    type=FiniteFloat(0),
    help="Cost per randomised participant (both arms: recruitment, assessment).",
)
@click.option(
    "--cost-trainer",
    default=0.0,
    show_default=True,
    type=FiniteFloat(0),
    help="Cost per trainer (training, supervision); trainers = ceil(groups / groups_per_trainer).",
)
@click.option(
    "--sizes",
    callback=_sizes,
    default=None,
    help="Group sizes to consider: list 4,6,8 or range 3:10:8 (default: min_size..max_size).",
)
@outcome_option
@out_option("budget", BUDGET_FILES)
@force_option
@format_option
@set_option
@friendly
def budget(
    scenario,
    budget,
    cost_group,
    cost_participant,
    cost_trainer,
    sizes,
    outcome,
    out,
    force,
    fmt,
    csv_dialect,
    overrides,
):
    """Most powerful number of groups and group size that a budget buys.

    For each group size the budget is spent on as many groups as it affords (with their
    controls at the scenario's allocation, and their trainers); the analytic power of the
    scenario's partially nested design picks the best. Trials of another structure (clusters
    randomised, groups in every arm, more than two arms) are refused, naming the design.
    Writes budget.csv (one row per group size), budget.json, budget.png and provenance.json.

    Example:

    \b
      trialsim budget scenarios/sft-19m.toml --budget 2000000 --cost-group 30000 \\
        --cost-participant 2500 --cost-trainer 15000 --force
    """
    from trialsim.analyse.registry import default_analysis
    from trialsim.data import write_table
    from trialsim.design.budget import Costs, optimise_budget
    from trialsim.design.figures import budget_figure
    from trialsim.files import write_json
    from trialsim.report.provenance import build_provenance, write_provenance

    s = load_scenario(scenario, overrides)
    out = out or Path("results") / s.name / "budget"
    _refuse(out, BUDGET_FILES, force)
    choice = default_analysis(s.structure, outcome or s.primary)
    costs = Costs(cost_group, cost_participant, cost_trainer)
    best, curve = optimise_budget(s, budget, costs, group_sizes=sizes, outcome=outcome)
    write_table(curve, out / "budget.csv", csv_dialect=csv_dialect)
    summary = {
        "scenario": s.name,
        "budget": budget,
        "costs": dataclasses.asdict(costs),
        "outcome": outcome or s.primary,
        "analysis": {"name": choice.name, "reason": choice.reason},
        "best": best,
        "by_group_size": curve.to_dict("records"),
    }
    write_json(out / "budget.json", summary)
    budget_figure(curve, best, out / "budget.png", title=f"{s.name}: budget {budget:,.0f}")
    write_provenance(
        out,
        build_provenance(
            command="budget",
            scenario_path=scenario,
            scenario=s,
            overrides=list(overrides),
            budget=budget,
            costs=dataclasses.asdict(costs),
            sizes=sizes,
            outcome=outcome,
        ),
    )

    def table() -> str:
        shown = curve.assign(
            cost=curve["cost"].map("{:,.0f}".format), power=curve["power"].round(3)
        )
        return "\n".join(
            [
                f"{s.name}: budget {budget:,.0f}; best per group size (analytic power)",
                choice.line() + "; the power is its analytic approximation",
                shown.to_string(index=False),
                f"optimum: {best['n_groups']} groups of {best['group_size']} "
                f"({best['n_control']} controls, {best['trainers']} trainers), cost "
                f"{best['cost']:,.0f}, power {best['power']:.3f}",
            ]
        )

    emit(fmt, text=table, record=summary, rows=curve, csv_dialect=csv_dialect)
    click.echo(f"outputs in {out}/", err=True)
