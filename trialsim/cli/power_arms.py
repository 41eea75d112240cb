"""`trialsim power` on a trial with three or more arms: every contrast and the decision."""

from __future__ import annotations

import inspect
from pathlib import Path

from trialsim.cli.common import InputError


def simulate_arms(
    result, s, outcome, names, reps, seed, alpha, plot, keep: Path | None, csv_dialect, df
) -> None:
    """Simulate every arm against the reference with each analysis in ``names`` and add the
    per-contrast rows to ``result["analyses"]`` and the decisions to ``result["multi_arm"]``
    (``result["_arm_runs"]``: each analysis with its summary, for the bias check)."""
    from trialsim.analyse.registry import get_analysis
    from trialsim.cli.power import _simulated_entry
    from trialsim.power.multi_arm import simulate_multi_arm
    from trialsim.report.progress import progress_bar

    if keep is not None and keep.suffix.lower() not in (".parquet", ".csv"):
        raise InputError(f"--keep-replicates {keep}: the file must end in .parquet or .csv")
    analyses = [name if not isinstance(name, str) else get_analysis(name) for name in names]
    summaries, tables, p_values = [], [], {}
    with progress_bar(reps * len(analyses), "simulating") as advance:
        for analysis in analyses:
            summary, worlds = simulate_multi_arm(
                s,
                analysis,
                reps=reps,
                seed=seed,
                outcome=outcome,
                alpha=alpha,
                progress=advance,
                df=df,
            )
            summaries.append(summary)
            for j, c in enumerate(summary.contrasts):
                p_values[f"{analysis.name} {c.contrast}"] = worlds["effect"].p[:, j]
                if keep is not None:
                    tables.append(_replicates(c, worlds, j))
    for summary in summaries:
        for c in summary.contrasts:
            entry = _simulated_entry(result, c.oc)
            result["analyses"].append({**entry, "contrast": c.contrast, "arm": c.arm})
    result["multi_arm"] = [summary.as_dict() for summary in summaries]
    result["_arm_runs"] = list(zip(analyses, summaries, strict=True))
    if keep is not None:
        import pandas as pd

        from trialsim.data import write_table

        write_table(pd.concat(tables, ignore_index=True), keep, csv_dialect=csv_dialect)
        result["replicates_file"] = str(keep)
    if plot:
        from trialsim.report.plots import running_power_plot

        running_power_plot(p_values, alpha, plot, title=f"{s.name}: {outcome}")


def _replicates(c, worlds, j):
    from trialsim.power.simulation import replicate_table

    table = replicate_table(
        c.oc.analysis,
        c.oc.outcome,
        c.target,
        worlds["effect"].column(j),
        worlds["null"].column(j),
    )
    table.insert(2, "contrast", c.contrast)
    return table


def analytic_decisions(s, outcome: str, alpha: float, contrasts: list[dict]) -> dict:
    """The analytic decision table over every contrast (or why there is none), from the
    per-contrast analytic results ``contrasts`` (their formula inputs: no second mapping)."""
    from trialsim.power.analytic import power_irgt
    from trialsim.power.analytic_arms import decision_table, from_irgt_parameters

    errors = [c["error"] for c in contrasts if "error" in c]
    if errors:
        return {"error": errors[0]}
    if any(c["formula"] != "irgt" for c in contrasts):
        return {
            "error": f"analytic decisions over {s.n_arms} arms need an individually randomised "
            "design: use --method simulation"
        }
    accepted = set(inspect.signature(power_irgt).parameters) - {"alpha"}
    params = [{k: v for k, v in c.items() if k in accepted} for c in contrasts]
    return decision_table(from_irgt_parameters([c["arm"] for c in contrasts], params, alpha))


def flag_biased_contrasts(result, s, outcome, reps, seed, alpha, df) -> None:
    """Every contrast of every analysis the scenario biases
    (:func:`trialsim.power.headlines.biased`) gets a headline naming its contrast, with the
    power at the true effect simulated with the bias sources off (same seed)."""
    from trialsim.power.headlines import (
        bias_sources,
        biased,
        biased_headline,
        unbiased_scenario,
    )
    from trialsim.power.multi_arm import simulate_multi_arm

    sources = bias_sources(s, outcome)
    for analysis, summary in result.pop("_arm_runs"):
        hits = [c for c in summary.contrasts if biased(c.oc, alpha, sources)]
        if not hits:
            continue
        fair = {}
        if sources:
            fair_summary, _ = simulate_multi_arm(
                unbiased_scenario(s),
                analysis,
                reps=reps,
                seed=seed,
                outcome=outcome,
                alpha=alpha,
                df=df,
            )
            fair = {c.contrast: c.oc for c in fair_summary.contrasts}
        for c in hits:
            h = biased_headline(c.oc, outcome, alpha, sources, fair.get(c.contrast))
            result.setdefault("headlines", []).append({**h, "contrast": c.contrast})
