"""`trialsim bayes`: Bayesian analysis of a trial-data file (PyMC + ArviZ, or exact)."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.bayes.priors import PRIOR_HELP
from trialsim.cli.common import (
    FiniteFloat,
    InputError,
    data_options,
    emit,
    force_option,
    format_option,
    friendly,
    load_trial,
    out_option,
    parse_rope,
    refuse_overwrite_in,
    rope_option,
    seed_option,
)

#: what bayes writes into --out (the draws and plots with MCMC only)
BAYES_FILES = (
    "summary.json",
    "posterior.nc",
    "draws.csv",
    "draws.parquet",
    "posterior_mcid.png",
    "prior_posterior.png",
    "trace.png",
)


@click.command()
@click.argument("data_file", metavar="DATA", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--outcome",
    default=None,
    help="Outcome column to analyse (default: the only outcome, or the --scenario's primary).",
)
@click.option(
    "--model",
    type=click.Choice(["partially-nested", "cluster", "stepped-wedge", "dose", "repeated"]),
    default=None,
    help="partially-nested: a random effect per delivery group where there are groups; "
    "cluster / stepped-wedge: effects of the randomised cluster; dose: adds a slope in the "
    "attended fraction of sessions; repeated: every post-baseline visit with a participant "
    "intercept plus the structure's group/cluster intercepts (see --estimand). Default: from "
    "the trial's structure, printed.",
)
@click.option(
    "--estimand",
    type=click.Choice(["last", "average", "constant"]),
    default=None,
    help="--model repeated: the treatment effect at the last visit (default), averaged over "
    "the visits, or one effect common to every visit.",
)
@click.option(
    "--contrast",
    default=None,
    metavar="ARM",
    help="With more than two arms: the arm compared with the reference (default the first).",
)
@click.option(
    "--prior",
    default=None,
    metavar="PRIOR",
    help=f"Effect prior: {PRIOR_HELP} (outcome units). Default: the scenario's, else "
    "weakly-informative.",
)
@rope_option
@click.option(
    "--group-prior",
    default=None,
    metavar="SPEC",
    help="Group-SD prior half-normal:SCALE or half-t:NU,SCALE (default half-normal, scale = "
    "half the baseline SD); with --model repeated the prior of every random intercept "
    "(default: participants scale = one baseline SD, groups and clusters half).",
)
@click.option(
    "--residual", type=click.Choice(["normal", "student-t"]), default="normal", show_default=True
)
@click.option(
    "--method",
    type=click.Choice(["mcmc", "exact"]),
    default="mcmc",
    show_default=True,
    help="mcmc: NUTS (nutpie, else PyMC); exact: quadrature posterior of the Gaussian model.",
)
@click.option("--draws", default=1000, show_default=True, type=click.IntRange(50))
@click.option("--tune", default=1000, show_default=True, type=click.IntRange(50))
@click.option("--chains", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option(
    "--target-accept",
    default=0.9,
    show_default=True,
    type=FiniteFloat(0.5, 1, open_high=True),
    help="Raise (e.g. 0.95-0.99) when divergences are reported.",
)
@click.option(
    "--formula",
    default=None,
    metavar="TEXT",
    help="The model in lme4 notation with at most one random intercept, e.g. "
    "\"bdi ~ treatment + bdi.pre + drug + length\" (see 'trialsim analyse --formula').",
)
@seed_option
@data_options
@out_option(
    "folder",
    "for summary.json, posterior.nc, draws.csv, draws.parquet and the plots (default "
    "results/<data>/bayes).",
)
@force_option
@format_option
@friendly
def bayes(
    data_file,
    outcome,
    model,
    contrast,
    estimand,
    prior,
    rope,
    group_prior,
    residual,
    method,
    draws,
    tune,
    chains,
    target_accept,
    seed,
    formula,
    declared,
    out,
    force,
    fmt,
    csv_dialect,
):
    """Bayesian analysis of a trial-data file: posterior of the treatment effect.

    Reports the posterior mean, SD, 95% HDI, R-hat and ESS, P(benefit), P(benefit beyond the
    MCID) and P(inside the ROPE), with the priors used (--format csv: one row per contrast
    and parameter, the probabilities on the effect's row). Sampler problems (divergences, R-hat,
    low ESS) are printed as warnings with a remedy. Writes summary.json, posterior.nc (ArviZ
    InferenceData), the draws as draws.csv and draws.parquet, and plots (posterior vs MCID,
    trace, prior vs posterior) to --out.

    \b
    Examples:
      trialsim bayes scenarios/data/sft-example.csv --outcome psp --better higher \
        --mcid 7 --prior sceptical --map participant=deltager,municipality=kommune \
        --map arm=gruppe,group=hold --force
      trialsim bayes tests/data/real/btheb.csv --outcome bdi --better lower --mcid 5 \
        --method exact --force
      trialsim bayes tests/data/real/btheb.csv --outcome bdi --better lower --mcid 5 \
        --model repeated --estimand average --method exact --force
    """
    from trialsim.bayes.analysis import BayesSettings, default_model, fit_trial
    from trialsim.bayes.output import versions
    from trialsim.files import file_sha256, write_json

    if estimand is not None and model != "repeated":
        raise InputError("--estimand applies to --model repeated only")
    if formula is not None and model == "repeated":
        raise InputError("--formula and --model repeated: give one (the formula is the model)")
    out = out or Path("results") / data_file.stem / "bayes"
    refuse_overwrite_in(out, BAYES_FILES, force)
    spec = None
    if formula is not None:
        from trialsim.cli.analyse import load_with_formula

        data, outcome, spec = load_with_formula(data_file, declared, outcome, formula)
    else:
        data, outcome = load_trial(data_file, declared, outcome)
    if data.n_reps != 1:
        raise InputError(
            f"{data_file}: holds {data.n_reps} simulated replicates; trialsim bayes analyses one "
            "trial (use trialsim assurance for many)"
        )
    st = data.structure
    all_arms = contrast is None and st.n_arms > 2
    if contrast is not None:
        data = data.for_contrast(contrast).two_arms()
    chosen, reason = default_model(st, outcome)
    if spec is not None:
        cluster = any(r.role in ("cluster", "site") for r in spec.random)
        chosen = "cluster" if cluster else "partially-nested"
        reason = f"its random intercept from --formula {spec.lme4()}"
    model_line = (
        f"model: {chosen} (default: {reason})"
        if model is None
        else f"model: {model} (chosen; the default is {chosen})"
    )
    priors = None
    if declared.scenario is not None:
        from trialsim.scenario import load_scenario

        priors = load_scenario(declared.scenario).analysis
    settings = BayesSettings.for_outcome(
        st,
        outcome,
        priors,
        model=model or chosen,
        prior=prior,
        rope=parse_rope(rope),
        group_prior=group_prior,
        residual=residual,
        estimand=estimand,
    )
    from trialsim.report.progress import sampling_message, status

    message = sampling_message(chains=chains, draws=draws, tune=tune)
    if all_arms:
        _all_contrasts(data, outcome, settings, spec, model_line, locals())
        return
    arrays = None
    if spec is not None:
        from trialsim.bayes.analysis import formula_arrays

        arrays = formula_arrays(data, spec)
    with status(message if method == "mcmc" else "computing the exact posterior"):
        result = fit_trial(
            data,
            outcome,
            settings,
            arrays=arrays,
            method=method,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            target_accept=target_accept,
        )
    record = {
        "data": str(data_file),
        "structure": st.describe(),
        "contrast": f"{st.arms[data.contrast]} - {st.reference}",
        "model_choice": model_line,
        "formula": spec.lme4() if spec is not None else result.model_text,
        "data_sha256": file_sha256(data_file),
        "seed": seed,
        "versions": versions(),
        **result.as_dict(),
    }
    write_json(out / "summary.json", record)
    if result.idata is not None:
        _write_mcmc_outputs(result, out, st.outcome(outcome), csv_dialect)
    text = [
        f"{data_file}: {'; '.join(st.describe()[:4])}",
        f"contrast: {record['contrast']}; {model_line}",
        _table(record),
    ]
    emit(
        fmt,
        text="\n".join(text),
        record=record,
        rows=parameter_rows(record["contrast"], record),
        csv_dialect=csv_dialect,
    )
    for line in record.get("diagnostics", {}).get("warnings", []):
        click.echo(f"warning: {line}", err=True)


def _all_contrasts(data, outcome, settings, spec, model_line, opts) -> None:
    """Every arm against the reference (more than two arms, no --contrast): one joint MCMC
    fit (or one exact posterior per contrast) and P(each arm is best)."""
    from trialsim.bayes.analysis import fit_contrasts
    from trialsim.bayes.output import versions
    from trialsim.files import file_sha256, write_json
    from trialsim.report.progress import sampling_message, status

    st, method, data_file = data.structure, opts["method"], opts["data_file"]
    message = sampling_message(chains=opts["chains"], draws=opts["draws"], tune=opts["tune"])
    with status(message if method == "mcmc" else "computing the exact posteriors"):
        res = fit_contrasts(
            data,
            outcome,
            settings,
            method=method,
            spec=spec,
            draws=opts["draws"],
            tune=opts["tune"],
            chains=opts["chains"],
            seed=opts["seed"],
            target_accept=opts["target_accept"],
        )
    record = {
        "data": str(data_file),
        "structure": st.describe(),
        "model_choice": model_line,
        "formula": spec.lme4() if spec is not None else None,
        "data_sha256": file_sha256(data_file),
        "seed": opts["seed"],
        "versions": versions(),
        **res.as_dict(),
    }
    write_json(opts["out"] / "summary.json", record)
    text = [
        f"{data_file}: {'; '.join(st.describe()[:4])}",
        f"every arm against {st.reference}; {model_line}",
        f"({res.note})",
    ]
    for name, result in res.results.items():
        text += ["", f"contrast: {name}", _table(result.as_dict())]
    if res.p_best is not None:
        best = ", ".join(f"{arm} {p:.3f}" for arm, p in res.p_best.items())
        text += ["", f"P(best arm, {settings.better} is better): {best}"]
    rows = [row for name, r in res.results.items() for row in parameter_rows(name, r.as_dict())]
    emit(
        opts["fmt"],
        text="\n".join(text),
        record=record,
        rows=rows,
        csv_dialect=opts["csv_dialect"],
    )
    first = next(iter(res.results.values()))
    for line in (first.summary.get("diagnostics") or {}).get("warnings", []):
        click.echo(f"warning: {line}", err=True)


def parameter_rows(contrast: str, r: dict) -> list[dict]:
    """``--format csv``: one row per parameter of one contrast's posterior (mean, sd, the
    interval, R-hat, ESS); the effect's row also holds P(benefit), P(beyond the MCID) and
    P(inside the ROPE)."""
    probabilities = {k: r[k] for k in ("p_benefit", "p_beyond_mcid", "p_in_rope") if k in r}
    interval = r.get("interval", f"{r.get('hdi_prob', 0.95):.0%} HDI")
    rows = []
    for p in r["parameters"]:
        row = {
            "contrast": contrast,
            "outcome": r["outcome"],
            "model": r["model"],
            "parameter": p["parameter"],
            "mean": p["mean"],
            "sd": p["sd"],
            "low": p.get("hdi_low", p.get("ci_low")),
            "high": p.get("hdi_high", p.get("ci_high")),
            "interval": interval,
            "r_hat": p.get("r_hat"),
            "ess_bulk": p.get("ess_bulk"),
            "mcid": r.get("mcid"),
            "better": r.get("better"),
        }
        rows.append({**row, **(probabilities if p["parameter"] == "effect" else {})})
    return rows


def _write_mcmc_outputs(result, out: Path, spec=None, csv_dialect: str = "comma") -> None:
    from trialsim.bayes import plots
    from trialsim.bayes.output import write_draws, write_netcdf
    from trialsim.report.style import effect_label

    write_netcdf(result.idata, out / "posterior.nc")
    write_draws(result.idata, out, csv_dialect=csv_dialect)
    draws = result.idata.posterior["effect"].values
    mcid = result.settings.signed_mcid
    label = effect_label(spec.name if spec else None, spec)
    plots.plot_posterior_mcid(
        draws,
        mcid,
        out / "posterior_mcid.png",
        rope=result.settings.rope,
        better=result.settings.better,
        xlabel=label,
    )
    plots.plot_prior_posterior(draws, result.prior, out / "prior_posterior.png", xlabel=label)
    names = [v for v in ("effect", "tau", "sigma") if v in result.idata.posterior]
    names += [str(v) for v in result.idata.posterior.data_vars if str(v).startswith("sd_")]
    plots.plot_trace(result.idata, names, out / "trace.png")


def _table(r: dict) -> str:
    lines = [
        f"outcome {r['outcome']}, model {r['model']} ({r['residual']} residuals)",
        f"effect prior    {r['prior_text']}",
    ]
    if "lme4" in r:
        lines.insert(1, f"  {r['lme4']}")
    if "sd_priors" in r:
        width = max(len(name) for name in r["sd_priors"]) + 11
        lines += [f"{name + '-SD prior':<{width}}{text}" for name, text in r["sd_priors"].items()]
    else:
        lines.append(f"group-SD prior  {r['group_sd_prior']}")
    lines += [
        "",
        f"{'parameter':<16}{'mean':>10}{'sd':>9}{'low':>10}{'high':>10}{'r_hat':>8}{'ess':>8}",
    ]
    for p in r["parameters"]:
        low = p.get("hdi_low", p.get("ci_low"))
        high = p.get("hdi_high", p.get("ci_high"))
        rhat = f"{p['r_hat']:>8.3f}" if "r_hat" in p else f"{'-':>8}"
        ess = f"{p['ess_bulk']:>8.0f}" if "ess_bulk" in p else f"{'-':>8}"
        lines.append(
            f"{p['parameter']:<16}{p['mean']:>10.3f}{p['sd']:>9.3f}{low:>10.3f}{high:>10.3f}"
            f"{rhat}{ess}"
        )
    interval = r.get("interval", f"{r.get('hdi_prob', 0.95):.0%} HDI")
    lines.insert(lines.index("") + 1, f"(low, high: {interval})")
    lines.append("")
    sign = ">" if r["better"] == "higher" else "<"
    lines.append(f"P(benefit: effect {sign} 0)      {r['p_benefit']:.3f}")
    if "p_beyond_mcid" in r:
        signed = r["mcid"] if r["better"] == "higher" else -r["mcid"]
        lines.append(f"P(effect {sign} {signed:g}, the MCID)  {r['p_beyond_mcid']:.3f}")
    if "p_in_rope" in r:
        lines.append(f"P(inside ROPE {r['rope']})  {r['p_in_rope']:.3f}")
    return "\n".join(lines)
