"""`trialsim assurance`: probability of success over a design prior, and the decision rule's
Bayesian operating characteristics."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.bayes.priors import PRIOR_HELP
from trialsim.cli.common import (
    FiniteFloat,
    InputError,
    deprecation,
    emit,
    force_option,
    format_option,
    friendly,
    out_option,
    outcome_option,
    parse_rope,
    refuse_overwrite,
    rope_option,
    scenario_argument,
    seed_option,
    set_option,
)
from trialsim.errors import UserError


@click.command()
@scenario_argument
@click.option(
    "--design-prior",
    "design_priors",
    multiple=True,
    metavar="KEY=FAMILY:PARAMS",
    help="Belief about nature, e.g. effect=normal:4,2 (full-attendance effect, outcome units) "
    "or icc=beta:2,30; any dotted scenario key works too. Families: normal, lognormal, beta, "
    "gamma (shape,rate), uniform, fixed. Repeatable; default: the scenario's design_priors.",
)
@click.option(
    "--decision",
    default="p_beyond_mcid>0.8",
    show_default=True,
    help="Success rule on the posterior: p_benefit, p_beyond_mcid, p_in_rope or "
    "posterior_mean compared with a number; terms joined by 'and'.",
)
@outcome_option
@click.option("--prior", default=None, metavar="PRIOR", help=f"Analysis prior: {PRIOR_HELP}.")
@click.option("--mcid", type=FiniteFloat(), default=None, help="MCID (default: the scenario's).")
@rope_option
@click.option(
    "--model",
    type=click.Choice(["partially-nested", "cluster", "stepped-wedge"]),
    default=None,
    help="Analysis model (default: from the one default rule on the trial's structure, "
    "printed with the result).",
)
@click.option(
    "--better",
    type=click.Choice(["higher", "lower"]),
    default=None,
    help="Direction of benefit (default: the outcome's 'better' in the scenario; needed when "
    "it declares none).",
)
@click.option(
    "--reps",
    default=2000,
    show_default=True,
    type=click.IntRange(2),
    help="Simulated trials in total (draws x --per-draw).",
)
@click.option(
    "--per-draw",
    default=20,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Trials simulated for each design-prior draw.",
)
@click.option(
    "--check-mcmc",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Re-analyse this many trials by NUTS and compare with the exact posterior.",
)
@seed_option
@out_option(
    "folder",
    "for assurance.json (the result), assurance.csv (assurance and the operating "
    "characteristics with their MCSE; what --format csv prints) and assurance-draws.csv (one "
    "row per design-prior draw with its success rate). Default: nothing written.",
    legacy=(".json", ".csv"),
)
@force_option
@format_option
@set_option
@friendly
def assurance(
    scenario,
    design_priors,
    decision,
    outcome,
    prior,
    mcid,
    rope,
    model,
    better,
    reps,
    per_draw,
    check_mcmc,
    seed,
    out,
    force,
    fmt,
    csv_dialect,
    overrides,
):
    """Assurance of SCENARIO: the probability that the trial meets --decision, averaged over
    design priors for the effect, ICC or any other scenario value.

    Every simulated trial is analysed with the exact Bayesian posterior (Gaussian model,
    priors printed with the result). Also reports the rule's probability of success with the
    effect fixed at 0 (Bayesian type-I error) and at the MCID (intention-to-treat), each with
    its Monte Carlo SE.

    \b
    Example:
      trialsim assurance scenarios/sft-19m.toml --design-prior effect=normal:7,3 \\
        --design-prior icc=beta:2,30 --decision "p_beyond_mcid>0.5" --reps 2000
    """
    from trialsim.bayes.assurance import assurance_settings, parse_decision, run_assurance
    from trialsim.bayes.distributions import parse_design_prior
    from trialsim.bayes.output import versions
    from trialsim.files import write_json
    from trialsim.report.progress import progress_bar
    from trialsim.scenario import load_scenario

    json_path = output_json(out)
    if json_path is not None:
        refuse_overwrite([json_path, *csv_paths(json_path)], force)
    s = load_scenario(scenario, overrides)
    outcome = outcome or s.primary
    if outcome not in s.outcomes:
        raise InputError(f"--outcome {outcome}: not in the scenario; choose {list(s.outcomes)}")
    priors = dict(getattr(s, "design_priors", {}) or {})
    for item in design_priors:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(
                f"--design-prior {item!r}: expected KEY=FAMILY:PARAMS, e.g. effect=normal:4,2"
            )
        priors[key.strip()] = text
    if not priors:
        raise InputError("no design prior: give --design-prior effect=normal:M,S (and icc=...)")
    parsed = {k: parse_design_prior(v) for k, v in priors.items()}
    rule = parse_decision(decision)
    sim = s.with_outcomes([outcome])
    try:
        settings, choice = assurance_settings(
            sim, outcome, better=better, model=model, prior=prior, mcid=mcid, rope=parse_rope(rope)
        )
    except UserError as exc:
        raise InputError(str(exc)) from None
    n_draws = max(2, -(-reps // per_draw))
    n_jobs = n_draws * (3 if settings.mcid is not None else 2) * per_draw
    with progress_bar(n_jobs, "simulating") as advance:
        result = run_assurance(
            sim,
            outcome,
            parsed,
            rule,
            settings,
            n_draws=n_draws,
            reps_per_draw=per_draw,
            seed=seed,
            check_mcmc=check_mcmc,
            progress=advance,
        )
    o_sd = s.outcomes[outcome].sd
    effect_prior, group_prior = settings.priors(o_sd)
    record = {
        "scenario": s.name,
        "scenario_sha256": s.digest(),
        "outcome": outcome,
        "seed": seed,
        "versions": versions(),
        "design_priors": {k: v.text for k, v in parsed.items()},
        "model": settings.model,
        "better": settings.better,
        "analysis": {"name": choice.name, "reason": choice.reason},
        "prior_text": effect_prior.describe(),
        "group_sd_prior": group_prior.describe(),
        "mcid": settings.mcid,
        **result.as_dict(),
    }
    if json_path is not None:
        write_json(json_path, record)
        write_csv_tables(json_path, result, csv_dialect=csv_dialect)
    r = result
    lines = [
        f"scenario {s.name}, outcome {outcome} ({settings.better} is better), model "
        f"{settings.model}" + (" (--model)" if model else ""),
        choice.line(),
        f"analysis prior  {effect_prior.describe()}; group SD {group_prior.describe()}",
        f"design priors   {', '.join(f'{k}={v.text}' for k, v in parsed.items())}",
        f"decision        {r.decision}",
        f"trials          {r.n_draws} draws x {r.reps_per_draw} = {r.n_draws * r.reps_per_draw}"
        f" (failed fits: {r.failed})",
        "",
        f"assurance                      {r.assurance:.3f} (MCSE {r.assurance_mcse:.3f})",
        f"P(success | effect = 0)        {r.p_success_null:.3f} (MCSE {r.p_success_null_mcse:.3f})",
    ]
    if r.p_success_mcid is not None:
        lines.append(
            f"P(success | ITT effect = MCID) {r.p_success_mcid:.3f} (MCSE "
            f"{r.p_success_mcid_mcse:.3f})"
        )
    if r.mcmc_check:
        c = r.mcmc_check
        diffs = ", ".join(f"{k} {v:.3f}" for k, v in c["max_abs_difference"].items())
        lines.append(
            f"MCMC check      {c['trials']} trials: decisions agree {c['decision_agreement']:.0%}"
            f"; max |MCMC - exact|: {diffs}"
        )
    emit(
        fmt,
        text="\n".join(lines),
        record=record,
        rows=summary_frame(result),
        csv_dialect=csv_dialect,
    )


def output_json(out: Path | None) -> Path | None:
    """The JSON result's path for ``--out``: FOLDER/assurance.json; the old form ``--out
    FILE.json`` (FILE.csv and FILE-draws.csv beside it) still works for one release, with a
    deprecation line."""
    if out is None:
        return None
    if out.suffix.lower() in (".json", ".csv"):
        deprecation(f"--out {out.name}", "--out FOLDER (assurance.json and its CSVs go in it)")
        return out.with_suffix(".json")
    return out / "assurance.json"


def summary_frame(result):
    """Assurance and the rule's operating characteristics, one row each: ``quantity``,
    ``estimate``, ``mcse``, ``decision``, ``draws``, ``reps_per_draw``."""
    import pandas as pd

    rows = [
        ("assurance", result.assurance, result.assurance_mcse),
        ("p_success_null", result.p_success_null, result.p_success_null_mcse),
    ]
    if result.p_success_mcid is not None:
        rows.append(("p_success_mcid", result.p_success_mcid, result.p_success_mcid_mcse))
    frame = pd.DataFrame(rows, columns=["quantity", "estimate", "mcse"])
    frame["decision"] = result.decision
    frame["draws"] = result.n_draws
    frame["reps_per_draw"] = result.reps_per_draw
    return frame


def csv_paths(out: Path) -> tuple[Path, Path]:
    """``OUT.csv`` and ``OUT-draws.csv`` beside the JSON file ``OUT.json``."""
    stem = out.with_suffix("")
    return stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + "-draws.csv")


def write_csv_tables(out: Path, result, *, csv_dialect: str = "comma") -> tuple[Path, Path]:
    """Write the summary (:func:`summary_frame`) and the per-draw table (design-prior values
    and success rate per draw) as CSV in ``csv_dialect`` beside the JSON result, atomically."""
    import pandas as pd

    from trialsim.files import write_csv

    summary_path, draws_path = csv_paths(out)
    write_csv(summary_frame(result), summary_path, dialect=csv_dialect, float_format="%.10g")
    draws = pd.DataFrame(result.draws).rename_axis("draw").reset_index()
    write_csv(draws, draws_path, dialect=csv_dialect, float_format="%.10g")
    return summary_path, draws_path
