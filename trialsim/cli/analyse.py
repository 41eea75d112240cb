"""`trialsim analyse`: one analysis on a trial-data file; `trialsim analyses`: the list."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import (
    ConventionCommand,
    InputError,
    RunFailed,
    data_options,
    df_option,
    emit,
    format_option,
    friendly,
    load_trial,
)


@click.command(cls=ConventionCommand, aliases={"--method": "--analysis"})
@click.argument("data_file", metavar="DATA", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--outcome",
    default=None,
    help="Outcome column to analyse (default: the only outcome, or the --scenario's primary).",
)
@click.option(
    "--analysis",
    "analysis_name",
    default=None,
    metavar="NAME",
    help="Analysis (see 'trialsim analyses'). Default: chosen from the trial's structure and "
    "the outcome's type, and printed.",
)
@click.option(
    "--contrast",
    default=None,
    metavar="ARM",
    help="Compare only this arm with the reference (default: every arm in turn).",
)
@click.option(
    "--formula",
    default=None,
    metavar="TEXT",
    help="Fit this model instead, in lme4 notation with the file's column names or the "
    'structure\'s roles, e.g. "math ~ arm + C(school) + sx + (1 | class)" (random '
    "intercepts only; month/visit terms make it a repeated-measures model).",
)
@click.option(
    "--estimand",
    type=click.Choice(["last", "average", "constant"]),
    default=None,
    help="Repeated measures (--analysis repeated): the treatment effect at the last visit "
    "(default), averaged over the visits, or constant over the visits.",
)
@df_option
@data_options
@format_option
@friendly
def analyse(
    data_file,
    outcome,
    analysis_name,
    contrast,
    formula,
    estimand,
    df_method,
    declared,
    fmt,
    csv_dialect,
):
    """Run one analysis on a trial-data file (real or simulated).

    DATA is CSV (also Danish ';' with decimal commas), Parquet, .xlsx, .dta or .sav, long or
    wide; the options name its columns and say what they are (check the file first with
    'trialsim validate', which prints the structure it finds). The default analysis follows
    from that structure and the outcome's type (groups, randomised clusters, counts, binary
    outcomes) and is printed with the result. With more than two arms each arm is compared
    with the reference; with a 'rep' column (simulated batches) there is one row per
    replicate.

    \b
    Examples:
      trialsim analyse scenarios/data/sft-example.csv --outcome psp \\
        --map participant=deltager,municipality=kommune,arm=gruppe,group=hold
      trialsim analyse tests/data/real/anorexia.csv --reference Cont
      trialsim analyse tests/data/real/btheb.csv --outcome bdi --covariate drug \\
        --covariate length --covariate bdi.pre --better lower
      trialsim analyse tests/data/real/star.csv --outcome math --reference reg \\
        --analysis lmm --df kenward-roger
    """
    from trialsim.analyse.registry import (
        adjust_contrasts,
        default_analysis,
        estimate_contrasts,
        formula_analysis,
        get_analysis,
        repeated_analysis,
    )

    if formula is not None and analysis_name is not None:
        raise InputError("--formula and --analysis: give one (the formula is the model)")
    if estimand is not None and (analysis_name or "") != "repeated":
        raise InputError("--estimand applies to --analysis repeated only")
    if formula is not None:
        data, outcome, model = load_with_formula(data_file, declared, outcome, formula)
    else:
        data, outcome = load_trial(data_file, declared, outcome)
    st = data.structure
    default = default_analysis(st, outcome)
    if formula is not None:
        analysis = formula_analysis(model)
        line = f"analysis: formula (chosen; the default is {default.name})"
    elif analysis_name is None:
        analysis, line = get_analysis(default.name), default.line()
    else:
        analysis = get_analysis(analysis_name)
        if analysis.name == "repeated":
            analysis = repeated_analysis(estimand or "last")
        line = f"analysis: {analysis.name} (chosen; the default is {default.name})"
    analysis = analysis.with_df(df_method)
    if contrast is not None:
        data = data.for_contrast(contrast)
        frame = estimate_contrasts(analysis, data, outcome, arms=(contrast,))
    else:
        frame = estimate_contrasts(analysis, data, outcome)
    frame, adjustments = adjust_contrasts(analysis, data, outcome, frame)
    spec = st.outcome(outcome)
    lme4 = analysis.model(st, outcome)
    header = [f"{data_file}: {'; '.join(st.describe()[:4])}", f"outcome {spec.describe()}", line]
    header += [f"model: {lme4}"] if lme4 else []
    if analysis.df != "satterthwaite":
        header.append("small-sample inference: Kenward-Roger adjusted SE and df (pbkrtest)")
    header += adjustments
    if fmt == "csv":  # what the rows are, on stderr: stdout stays one CSV table
        click.echo("\n".join(header), err=True)
    emit(
        fmt,
        text=lambda: "\n".join(
            [*header, frame.to_string(index=False, float_format=lambda x: f"{x:.4g}")]
        ),
        record={
            "data": str(data_file),
            "outcome": outcome,
            "outcome_spec": spec.describe(),
            "analysis": analysis.name,
            "model": lme4,
            "df_method": analysis.df,
            "multiplicity": adjustments,
            "default_analysis": {"name": default.name, "reason": default.reason},
            "structure": st.describe(),
            "results": frame.to_dict(orient="records"),
        },
        rows=frame,
        csv_dialect=csv_dialect,
    )
    failed = int(frame["failed"].sum())
    if failed and data.n_reps == 1:
        raise RunFailed(
            f"the {analysis.name} fit failed on {data_file} ({_why(frame)}); try another "
            "analysis (see 'trialsim analyses') or check the data with 'trialsim validate'"
        )
    if failed:
        click.echo(f"note: {failed} of {len(frame)} fits failed (counted, not dropped)", err=True)


def load_with_formula(data_file, declared, outcome, formula):
    """Read the file for ``--formula``: names the formula uses that are neither roles nor
    declared covariates are read as covariates (when the file has them); the outcome is the
    formula's left-hand side. Returns ``(data, outcome, ModelSpec)``."""
    from dataclasses import replace

    from trialsim.analyse.formula import formula_names, parse_formula
    from trialsim.io.load import check_trial_file

    lhs = formula.split("~", 1)[0].strip() if "~" in formula else None
    if outcome is None:
        outcome = lhs or None
    table = check_trial_file(data_file, declared=declared)
    ignored = {c.split(" (")[0].casefold(): c.split(" (")[0] for c in table.ignored}
    declared_names = {name.casefold() for name, _ in declared.covariates}
    extra = [
        ignored[n.casefold()]
        for n in formula_names(formula)
        if n.casefold() in ignored and n.casefold() not in declared_names
    ]
    if extra:
        declared = replace(
            declared, covariates=declared.covariates + tuple((n, None) for n in extra)
        )
    data, outcome = load_trial(data_file, declared, outcome)
    if lhs is not None and lhs.casefold() != outcome.casefold():
        raise InputError(f"--formula: its outcome {lhs!r} differs from --outcome {outcome}")
    names = dict(table.names)
    return data, outcome, parse_formula(formula, data.structure, names)


def _why(frame) -> str:
    row = frame[frame["failed"]].iloc[0]
    if "converged" in row and not row["converged"]:
        return "the optimiser did not converge"
    return "too few usable rows for the model, or a design matrix without full rank"


@click.command("analyses")
def list_analyses():
    """List the analyses with what each estimates."""
    from trialsim.analyse.registry import ANALYSES

    for a in ANALYSES.values():
        click.echo(f"{a.name:<16} {a.description}")
