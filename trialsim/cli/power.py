"""`trialsim power`: analytic and simulated power, and solving for a sample size."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import (
    InputError,
    alpha_option,
    df_option,
    emit,
    force_option,
    format_option,
    formula_option,
    friendly,
    out_option,
    refuse_overwrite,
    reps_option,
    scenario_argument,
    seed_option,
    set_option,
    target_power_option,
)
from trialsim.errors import UserError
from trialsim.scenario import load_scenario


@click.command()
@scenario_argument
@click.option(
    "--method",
    type=click.Choice(["analytic", "simulation", "both"]),
    default="both",
    show_default=True,
    help="Closed-form formula, simulation of the full trial, or both side by side.",
)
@click.option(
    "--analysis",
    "analyses",
    multiple=True,
    metavar="NAME",
    help="Analysis to simulate (repeatable with one outcome; at most one with several). "
    "Default: the one rule on the trial's structure and the outcome (printed with the "
    "results; e.g. 'poisson' for counts). See 'trialsim analyses'.",
)
@formula_option
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    metavar="NAME",
    help="Outcome to power (default: the primary). Repeat for several outcomes: each gets "
    "its own results and --decision sets how they combine.",
)
@click.option(
    "--decision",
    type=click.Choice(["each", "all", "any"]),
    default=None,
    help="With several --outcome: 'all' = co-primary (every outcome significant at alpha), "
    "'any' = at least one significant after Holm adjustment. Both are reported; this one "
    "is shown first. Default: all. With 3+ arms and --solve n_participants|n_groups: what "
    "the solve targets: 'each' (every contrast on its own, the default), 'any' or 'all' "
    "arms significant, after --adjustment.",
)
@click.option(
    "--adjustment",
    type=click.Choice(["none", "bonferroni", "dunnett"]),
    default="none",
    show_default=True,
    help="With 3+ arms and --solve n_participants|n_groups: the multiplicity adjustment of "
    "the --decision the solve targets.",
)
@reps_option(1000, timed=True)
@seed_option
@alpha_option
@click.option(
    "--solve",
    "unknown",
    default=None,
    metavar="PARAM",
    help="Solve the analytic formula for one unknown: effect (minimum detectable effect; "
    "for binary and count outcomes the odds or rate ratio nearest 1), "
    "icc, sd (largest residual ICC/SD after baseline adjustment), alpha, dropout; "
    "n_groups, group_size, n_control, n_participants (individual/waitlist/cohort); "
    "n_clusters, cluster_size (municipality); clusters_per_step, n_per_period (stepped "
    "wedge). Prints what was held fixed and the totals per arm.",
)
@click.option(
    "--hold",
    type=click.Choice(["allocation", "n_control"]),
    default="allocation",
    show_default=True,
    help="When solving for n_groups or group_size: keep the allocation ratio (the controls "
    "grow with the treated arm) or keep the scenario's controls fixed.",
)
@out_option(
    "file",
    "(.parquet or .csv) to write every simulated replicate's estimate, SE, p-value, interval "
    "and failure to, with its own estimand and the truth on the analysis's scale (with and "
    "without the effect).",
    suffixes=(".parquet", ".csv"),
    name="--keep-replicates",
)
@click.option(
    "--curve",
    default=None,
    metavar="SIZE=VALUES",
    help="Power curve over the sample size, analytic and simulated on the same seed at every "
    "point, and the size reaching --target-power read off the simulated curve with its "
    "Monte Carlo uncertainty. SIZE: n_participants, participants_scale, n_groups or "
    "group_size; VALUES a list (20,30,40) or a range start:stop:n.",
)
@click.option(
    "--range",
    "over_range",
    default=None,
    metavar="KEY=VALUES",
    help="With --solve: the answer at each value of the group ICC or the effect, e.g. "
    "icc=0.02:0.12:6 or effect=5,7,9 (a table, one command).",
)
@click.option(
    "--design-prior",
    "design_prior",
    default=None,
    metavar="KEY=FAMILY:PARAMS",
    help="With --solve: the count whose power averaged over this prior for the group ICC "
    "or the effect reaches --target-power, e.g. icc=beta:2,30 or effect=normal:7,2.",
)
@target_power_option("Power the --solve unknown or the --curve must reach.")
@out_option(
    "file",
    "(.png, .svg or .pdf) to draw the running power in (Monte Carlo convergence).",
    suffixes=(".png", ".svg", ".pdf"),
    name="--plot",
)
@force_option
@df_option
@format_option
@set_option
@friendly
def power(
    scenario,
    method,
    analyses,
    formula,
    outcomes,
    decision,
    adjustment,
    reps,
    seed,
    alpha,
    unknown,
    hold,
    keep_replicates,
    curve,
    over_range,
    design_prior,
    target_power,
    plot,
    force,
    df_method,
    fmt,
    csv_dialect,
    overrides,
):
    """Power of SCENARIO: analytic, by simulation, or both; or solve for a sample size.

    JSON (--format json) has a top-level 'analyses' list: per simulated analysis name,
    outcome, power, power_mcse, type1, bias, coverage, failures (and their MCSEs); per
    analytic formula name ('analytic-irgt', ...), outcome and power. With 3+ arms also
    'multi_arm' (simulated decisions per analysis) and 'analytic_decisions' (each/any/all
    power per adjustment). CSV (--format csv) has one row per entry of 'analyses' (with
    --curve: per size; with --range: per value), then the decisions.

    Simulation reports, for each analysis, power, type-I error (the same trials with zero
    effect), bias, empirical SE, coverage and failures, each with its Monte Carlo SE. Bias
    counts everything the scenario builds in: unblinded assessors, informative dropout,
    self-selected attendance. Failed fits are counted: they never reject and never cover.

    With several --outcome the outcomes are simulated together (correlated) and the power of
    the decision over all of them is reported: 'all' (co-primary) or 'any' (Holm).

    \b
    Examples:
      trialsim power scenarios/sft-19m.toml --reps 2000
      trialsim power scenarios/sft-19m.toml --method analytic --solve n_groups
      trialsim power scenarios/sft-19m.toml --method analytic --solve dropout
      trialsim power scenarios/sft-19m.toml --method analytic --solve n_groups \
        --range icc=0.02:0.12:6
      trialsim power scenarios/sft-19m.toml --outcome psp --outcome mhrm --decision all \
        --reps 500
    """
    refuse_overwrite([plot], force, "--plot")
    refuse_overwrite([keep_replicates], force, "--keep-replicates")
    s = load_scenario(scenario, overrides)
    if df_method != "satterthwaite" and method == "analytic":
        raise InputError(f"--df {df_method} applies to simulated analyses; use --method simulation")
    if formula is not None:
        analyses, outcomes = _formula(s, formula, analyses, outcomes)
    shown = {"fmt": fmt, "csv_dialect": csv_dialect}
    if curve:
        _curve(
            scenario,
            overrides,
            s,
            curve,
            analyses,
            outcomes,
            reps,
            seed,
            alpha,
            target_power,
            shown,
            df_method,
        )
        return
    if over_range or design_prior:
        _uncertain(s, unknown, hold, over_range, design_prior, target_power, alpha, shown)
        return
    outcomes = list(dict.fromkeys(outcomes or [s.primary]))
    unknown_outcomes = [o for o in outcomes if o not in s.outcomes]
    if unknown_outcomes:
        raise InputError(
            f"--outcome {unknown_outcomes[0]}: not in the scenario; choose from {list(s.outcomes)}"
        )
    several = len(outcomes) > 1
    arms_solve = s.n_arms > 2 and not several and unknown in ("n_participants", "n_groups")
    if several:
        _check_several_outcomes(analyses, unknown, plot)
        if decision == "each":
            raise InputError("--decision each is for 3+ arms; with several --outcome: all or any")
    elif decision is not None and not arms_solve:
        raise InputError(
            "--decision needs at least two --outcome options (e.g. psp and mhrm), or 3+ arms "
            "with --solve n_participants or n_groups"
        )
    if arms_solve and hold != "allocation":
        raise InputError("--hold n_control is for two arms: with 3+ arms the allocation is held")
    if adjustment != "none" and not arms_solve:
        raise InputError("--adjustment applies to 3+ arms with --solve n_participants or n_groups")
    result = {
        "scenario": s.name,
        "scenario_sha256": s.digest(),
        "outcome": outcomes[0],
        "outcomes": outcomes,
        "seed": seed,
        "reps": reps,
        "alpha": alpha,
        "df": df_method,
        "versions": _versions(),
        "analyses": [],  # simulated analyses and analytic formulas, one entry each
    }
    if formula is not None:
        result["formula"] = analyses[0].model(s.structure, outcomes[0])
        result["_formula"] = list(analyses)  # the model itself, for re-simulation
    from trialsim.power.headlines import observed_power_note

    note = observed_power_note(s)
    if note:
        result["headlines"] = [{"kind": "observed_power", "text": note}]
    if arms_solve:
        from trialsim.power.solve_arms import solve_arms

        result["solve"] = solve_arms(
            s,
            unknown,
            target_power,
            outcomes[0],
            decision=decision or "each",
            adjustment=adjustment,
            alpha=alpha,
        )
    elif unknown:
        from trialsim.power.from_scenario import analytic_solve

        result["solve"] = analytic_solve(
            s, unknown, target_power, outcomes[0], hold=hold, arm=_first_contrast(s), alpha=alpha
        )
    if method in ("analytic", "both"):
        result["analytic"] = _analytic(s, outcomes, strict=method == "analytic", alpha=alpha)
        if s.n_arms > 2 and not several:
            from trialsim.cli.power_arms import analytic_decisions

            result["analytic_contrasts"] = _analytic_contrasts(s, outcomes[0], alpha)
            result["analytic_decisions"] = analytic_decisions(
                s, outcomes[0], alpha, result["analytic_contrasts"]
            )
        by_outcome = result["analytic"] if several else {outcomes[0]: result["analytic"]}
        result["analyses"] += [
            {"name": f"analytic-{a['formula']}", "method": "analytic", "outcome": o, **a}
            for o, a in by_outcome.items()
            if "error" not in a
        ]
    if s.n_arms > 2 and method != "simulation":
        solved = " compares" if arms_solve else " and --solve compare"
        result["contrast_note"] = (
            f"{s.n_arms} arms: the headline analytic power{solved} "
            f"{s.arm_labels[1]} with {s.arm_labels[0]} (the first contrast); the analytic lines "
            "above give every contrast"
            + ("" if not several else " (the simulation with several outcomes: the first)")
        )
    if method in ("simulation", "both"):
        if several:
            _simulate_several(
                result, s, outcomes, analyses, decision or "all", reps, seed, alpha, df_method
            )
        elif s.n_arms > 2:
            from trialsim.cli.power_arms import flag_biased_contrasts, simulate_arms

            names = _choose(result, s, outcomes[0], analyses)
            simulate_arms(
                result,
                s,
                outcomes[0],
                names,
                reps,
                seed,
                alpha,
                plot,
                keep_replicates,
                csv_dialect,
                df_method,
            )
            flag_biased_contrasts(result, s, outcomes[0], reps, seed, alpha, df_method)
        else:
            _simulate_one(
                result,
                s,
                outcomes[0],
                analyses,
                reps,
                seed,
                alpha,
                plot,
                keep_replicates,
                csv_dialect,
                df_method,
            )
    result.pop("_formula", None)

    def table() -> str:
        from trialsim.report.tables import multi_arm_lines, power_table

        lines = [power_table(result)]
        if "multi_arm" in result:
            analytic = result.get("analytic_decisions")
            lines += multi_arm_lines(result["multi_arm"], result["alpha"], analytic)
        elif "analytic_decisions" in result:
            from trialsim.report.tables import analytic_decision_lines

            lines += analytic_decision_lines(result["analytic_decisions"])
        lines += planning_lines(result)
        for entry in result.get("choices", []):
            prefix = f"{entry['outcome']}: " if several else ""
            lines.append(prefix + entry["line"])
            if "note" in entry:
                lines.append(f"note: {entry['note']}")
        if df_method != "satterthwaite" and method != "analytic":
            lines.append(f"small-sample df of the mixed models: {df_method}")
        return "\n".join(lines)

    emit(fmt, text=table, record=result, rows=lambda: power_rows(result), csv_dialect=csv_dialect)


def _formula(s, text, analyses, outcomes):
    """``--formula``: the model as the one analysis, its left-hand side as the outcome."""
    from trialsim.analyse.formula import parse_formula
    from trialsim.analyse.registry import formula_analysis

    if analyses:
        raise InputError("--formula and --analysis: give one (the formula is the model)")
    try:
        spec = parse_formula(text, s.structure)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if outcomes and list(outcomes) != [spec.outcome]:
        raise InputError(
            f"--formula models {spec.outcome}: drop --outcome or make it {spec.outcome}"
        )
    return (formula_analysis(spec),), (spec.outcome,)


def power_rows(result: dict) -> list[dict]:
    """``--format csv``: one row per simulated analysis and analytic formula (the JSON's
    'analyses'), then one per decision rule over several outcomes, with the scenario, seed,
    replicates and alpha on every row."""
    common = {k: result[k] for k in ("scenario", "seed", "reps", "alpha")}
    rows = [{**common, **entry} for entry in result["analyses"]]
    for rule, decision in result.get("decisions", {}).items():
        rows.append({**common, "name": f"decision-{rule}", "method": "simulation", **decision})
    for arms in result.get("multi_arm", []):  # several arms: one row per adjustment
        for rule, decision in arms["decisions"].items():
            d = {k: v for k, v in decision.items() if k not in ("adjustment", "contrast_power")}
            name = f"{arms['analysis']} decision-{rule}"
            rows.append({**common, "name": name, "method": "simulation", **d})
    return rows


def _uncertain(s, unknown, hold, over_range, design_prior, target, alpha, shown) -> None:
    """``--range`` / ``--design-prior`` with ``--solve``: sample size under uncertainty."""
    from trialsim.design.grid import parse_vary
    from trialsim.power import uncertain

    if not unknown:
        raise InputError("--range and --design-prior need --solve (e.g. --solve n_groups)")
    out: dict = {"scenario": s.name, "solve": unknown, "target_power": target, "alpha": alpha}
    lines = []
    if over_range:
        try:
            axis = parse_vary(over_range)
        except UserError as exc:
            raise InputError(str(exc).replace("--vary", "--range")) from None
        if axis.key not in uncertain.UNCERTAIN or not axis.numeric:
            raise InputError(f"--range {over_range}: KEY is icc or effect, with numbers")
        rows = uncertain.solve_over_range(
            s, axis.key, axis.values, unknown, target, hold=hold, alpha=alpha
        )
        out["range"] = rows
        lines += uncertain.format_range(rows, axis.key, unknown, target)
    if design_prior:
        from trialsim.bayes.distributions import parse_design_prior

        key, sep, text = design_prior.partition("=")
        if not sep or key not in uncertain.UNCERTAIN:
            raise InputError(
                f"--design-prior {design_prior}: expected icc=FAMILY:PARAMS or "
                "effect=FAMILY:PARAMS, e.g. icc=beta:2,30"
            )
        averaged = uncertain.solve_averaged(
            s, key, parse_design_prior(text), unknown, target, alpha=alpha
        )
        out["averaged"] = averaged
        lines.append(uncertain.format_averaged(averaged))
    rows = [{"kind": "range", "key": axis.key, **r} for r in out.get("range", [])]
    if "averaged" in out:
        rows.append({"kind": "design-prior", **out["averaged"]})
    common = {"scenario": s.name, "solve": unknown, "target_power": target, "alpha": alpha}
    emit(text="\n".join(lines), record=out, rows=[{**common, **r} for r in rows], **shown)


def _curve(path, overrides, s, text, analyses, outcomes, reps, seed, alpha, target, shown, df):
    """``--curve SIZE=VALUES``: the power curve over a sample size."""
    from trialsim.design.grid import parse_vary
    from trialsim.power.curve import SIZE_KEYS, format_curve, power_curve
    from trialsim.power.headlines import bias_sources, flagged
    from trialsim.report.progress import progress_bar
    from trialsim.scenario import apply_overrides, read_scenario_raw

    try:
        axis = parse_vary(text)
    except UserError as exc:
        raise InputError(str(exc).replace("--vary", "--curve")) from None
    if axis.key not in SIZE_KEYS:
        raise InputError(f"--curve {axis.key}: choose one of {', '.join(SIZE_KEYS)}")
    if not axis.numeric or len(axis.values) < 2:
        raise InputError(f"--curve {text}: give at least two numbers, e.g. {axis.key}=20:60:5")
    if len(analyses) > 1 or len(outcomes) > 1:
        raise InputError("--curve takes at most one --analysis and one --outcome")
    raw = apply_overrides(read_scenario_raw(Path(path)), list(overrides), source=str(path))
    with progress_bar(reps * len(axis.values), "simulating") as advance:
        c = power_curve(
            raw,
            axis.key,
            axis.values,
            reps=reps,
            seed=seed,
            target=target,
            alpha=alpha,
            outcome=outcomes[0] if outcomes else None,
            analysis=analyses[0] if analyses else None,
            source=str(path),
            progress=advance,
            df=df,
        )
    biased = [p for p in c.points if flagged(p.type1, p.type1_mcse, alpha)]
    out = c.as_dict()
    if analyses and not isinstance(analyses[0], str):  # --formula: the model, printed back
        out["formula"] = analyses[0].model(s.structure, c.outcome)
    if biased:
        out["warning"] = (
            f"type-I error exceeds alpha by more than 3 Monte Carlo SEs at {len(biased)} of "
            f"{len(c.points)} sizes: the scenario biases {c.analysis}, so the simulated curve is "
            "a rejection rate above the power at the true effect. Bias sources: "
            + ("; ".join(bias_sources(s, c.outcome)) or "none that trialsim knows of")
        )
    lines = list(format_curve(c))
    if "formula" in out:
        lines.append(f"analysis: formula {out['formula']} (chosen with --formula)")
    if "warning" in out:
        lines.append(f"warning: {out['warning']}")
    emit(
        text="\n".join(lines),
        record={"scenario": s.name, "alpha": alpha, "curve": out},
        rows=lambda: [{"scenario": s.name, "alpha": alpha, **p} for p in curve_points(out)],
        **shown,
    )


def curve_points(curve: dict) -> list[dict]:
    """The points of a power curve's JSON, one record each (the curve's analysis, outcome and
    size key repeated on every row)."""
    scalars = {k: v for k, v in curve.items() if not isinstance(v, list | dict)}
    return [{**scalars, **p} for p in curve["points"]]


def _check_several_outcomes(analyses, unknown, plot) -> None:
    if len(analyses) > 1:
        raise InputError(
            "with several --outcome give at most one --analysis (used for every outcome), "
            "or none for the default per outcome type"
        )
    if unknown:
        raise InputError("--solve works with one --outcome; drop the others or run it per outcome")
    if plot:
        raise InputError("--plot works with one --outcome; drop the others or run it per outcome")


def _versions() -> dict:
    from trialsim.files import package_versions

    return package_versions(("trialsim", "numpy", "scipy", "statsmodels"))


def _choose(result, s, outcome: str, analyses) -> list[str]:
    """The analyses to simulate for ``outcome``: ``--analysis`` or the one default rule
    (:func:`trialsim.analyse.registry.default_analysis` on the scenario's structure). The
    choice and its reason go into ``result["choices"]`` (printed and in the JSON)."""
    from trialsim.analyse.registry import default_analysis
    from trialsim.power.simulation import estimand_note

    choice = default_analysis(s.structure, outcome)
    names = list(analyses) or [choice.name]
    for name in names:
        default = not analyses
        entry = {
            "outcome": outcome,
            "name": name,
            "reason": choice.reason if default else "--analysis",
            "default": choice.name,
            "default_reason": choice.reason,
            "line": choice.line()
            if default
            else f"analysis: {name} (chosen with --analysis; the default is {choice.name})",
        }
        if not isinstance(name, str):  # --formula: the model printed in lme4 notation
            model = name.model(s.structure, outcome)
            entry.update(name=name.name, reason="--formula", model=model)
            entry["line"] = (
                f"analysis: formula {model} (chosen with --formula; the default is {choice.name})"
            )
            result.setdefault("choices", []).append(entry)
            continue
        note = estimand_note(s, outcome, name)
        if note is not None:
            entry["note"] = note
        result.setdefault("choices", []).append(entry)
    return names


def _first_contrast(s) -> str | None:
    """With three or more arms the analytic formulas compare one arm with the reference: the
    first non-reference arm unless the contrasts are listed one by one."""
    return s.arm_labels[1] if s.n_arms > 2 else None


def _analytic_contrasts(s, outcome: str, alpha: float) -> list[dict]:
    from trialsim.power.from_scenario import analytic_power

    out = []
    for arm in s.arm_labels[1:]:
        try:
            a = analytic_power(s, outcome, arm=arm, alpha=alpha)
            out.append({"arm": arm, "reference": s.arm_labels[0], **a})
        except UserError as exc:
            out.append({"arm": arm, "reference": s.arm_labels[0], "error": str(exc)})
    return out


def planning_lines(result: dict) -> list[str]:
    """Lines printed under the power table: what the analytic SD/ICC are, which contrast
    each power belongs to, what a solve held fixed, and warnings."""
    from trialsim.power.headlines import headline_lines

    lines = []
    analytic = result.get("analytic")
    if isinstance(analytic, dict) and "residual_note" in analytic:
        lines.append(f"note: {analytic['residual_note']}")
    for c in result.get("analytic_contrasts", []):
        if "error" in c:
            lines.append(f"analytic, {c['arm']} vs {c['reference']}: {c['error']}")
        else:
            lines.append(
                f"analytic ({c['formula']}), {c['arm']} vs {c['reference']}: power "
                f"{c['power']:.3f} for an ITT effect of {c['effect']:.3g}"
            )
    if result.get("contrast_note"):
        lines.append(f"note: {result['contrast_note']}")
    sol = result.get("solve")
    if sol:
        lines.append(f"held: {sol['held']} (power {sol['power']:.3f})")
        lines += [f"warning: {w}" for w in sol["warnings"]]
    lines += headline_lines(result)
    return lines


def _analytic(s, outcomes: list[str], *, strict: bool, alpha: float = 0.05):
    """Analytic power of each outcome; an error is raised (``strict``) or reported."""
    from trialsim.power.from_scenario import analytic_power

    by_outcome = {}
    for outcome in outcomes:
        try:
            by_outcome[outcome] = analytic_power(s, outcome, arm=_first_contrast(s), alpha=alpha)
        except UserError as exc:
            if strict and len(outcomes) == 1:
                raise
            by_outcome[outcome] = {"error": str(exc)}
    return by_outcome[outcomes[0]] if len(outcomes) == 1 else by_outcome


def _simulate_one(
    result, s, outcome, analyses, reps, seed, alpha, plot, keep, csv_dialect, df
) -> None:
    from trialsim.power.simulation import simulate_operating_characteristics
    from trialsim.report.progress import progress_bar

    names = _choose(result, s, outcome, analyses)
    tables = [] if keep is not None else None
    with progress_bar(reps, "simulating") as advance:
        ocs, p_values = simulate_operating_characteristics(
            s,
            names,
            reps=reps,
            seed=seed,
            outcome=outcome,
            alpha=alpha,
            progress=advance,
            replicates=tables,
            df=df,
        )
    if keep is not None:
        import pandas as pd

        from trialsim.data import write_table

        write_table(pd.concat(tables, ignore_index=True), keep, csv_dialect=csv_dialect)
        result["replicates_file"] = str(keep)
    result["analyses"] += [_simulated_entry(result, oc) for oc in ocs]
    _flag_biased(result, s, outcome, ocs, reps, seed, alpha, df)
    if plot:
        from trialsim.report.plots import running_power_plot

        analytic = result.get("analytic")
        analytic = analytic.get("power") if isinstance(analytic, dict) else None
        running_power_plot(p_values, alpha, plot, title=f"{s.name}: {outcome}", analytic=analytic)


def _flag_biased(result, s, outcome, ocs, reps, seed, alpha, df) -> None:
    """Analyses the scenario biases (:func:`trialsim.power.headlines.biased`): name the
    scenario's bias sources and simulate the power at the true effect with them switched off
    (same seed)."""
    from trialsim.power.headlines import (
        bias_sources,
        biased,
        biased_headline,
        unbiased_scenario,
    )
    from trialsim.power.simulation import simulate_operating_characteristics

    sources = bias_sources(s, outcome)
    hits = [oc for oc in ocs if biased(oc, alpha, sources)]
    if not hits:
        return
    fair = {}
    if sources:
        formula = {a.name: a for a in result.get("_formula", [])}  # --formula's model
        fair_ocs, _ = simulate_operating_characteristics(
            unbiased_scenario(s),
            [formula.get(oc.analysis, oc.analysis) for oc in hits],
            reps=reps,
            seed=seed,
            outcome=outcome,
            alpha=alpha,
            df=df,
        )
        fair = {oc.analysis: oc for oc in fair_ocs}
    for oc in hits:
        h = biased_headline(oc, outcome, alpha, sources, fair.get(oc.analysis))
        result.setdefault("headlines", []).append(h)


def _simulate_several(result, s, outcomes, analyses, rule, reps, seed, alpha, df) -> None:
    from trialsim.power.simulation import simulate_multiple_outcomes
    from trialsim.report.progress import progress_bar

    names = {o: _choose(result, s, o, analyses)[0] for o in outcomes}
    with progress_bar(reps, "simulating") as advance:
        per_outcome, decisions = simulate_multiple_outcomes(
            s, names, outcomes, reps=reps, seed=seed, alpha=alpha, progress=advance, df=df
        )
    result["analyses"] += [_simulated_entry(result, oc) for oc in per_outcome]
    result["decision"] = decisions[rule].as_dict()
    result["decisions"] = {k: d.as_dict() for k, d in decisions.items()}


def _simulated_entry(result, oc) -> dict:
    """One simulated analysis for the JSON, with why it was used (``reason``)."""
    reason = next(
        (
            c["reason"]
            for c in result.get("choices", [])
            if (c["outcome"], c["name"]) == (oc.outcome, oc.analysis)
        ),
        None,
    )
    return {**oc.as_dict(), "method": "simulation", "reason": reason}
