"""`trialsim analyse`: one analysis on a trial-data file; `trialsim analyses`: the list."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import echo_json, format_option, friendly, map_option, wide_option


@click.command()
@click.argument("data_file", metavar="DATA", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--outcome", default="psp", show_default=True, help="Outcome column to analyse.")
@click.option(
    "--method",
    "method",
    default="mixed",
    show_default=True,
    metavar="NAME",
    help="Analysis (see 'trialsim analyses').",
)
@map_option
@wide_option
@format_option
@friendly
def analyse(data_file, outcome, method, mapping, wide, fmt):
    """Run one analysis on a trial-data file (real or simulated).

    DATA is CSV (also Danish ';' with decimal commas), Parquet, .xlsx, .dta or .sav, long or
    wide; --map names the file's columns (check the file first with 'trialsim validate').
    With a 'rep' column (simulated batches) there is one result row per replicate with
    rep, estimate, se, df, p_value, ci_low, ci_high and the variance components.

    \b
    Examples:
      trialsim analyse sft.csv --outcome psp --method mixed
      trialsim analyse scenarios/data/sft-example.csv --method cace-dose \\
        --map participant=deltager,municipality=kommune,arm=gruppe,group=hold \\
        --map sessions_offered=tilbudt,sessions_attended=fremmøde
    """
    from trialsim.analyse.registry import get_analysis
    from trialsim.data import read_trial_data

    analysis = get_analysis(method)
    data = read_trial_data(data_file, mapping, wide=wide)
    frame = analysis.run(data, outcome).to_frame(rep=data.rep)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        echo_json(
            {
                "data": str(data_file),
                "outcome": outcome,
                "analysis": method,
                "design": data.design,
                "results": frame.to_dict(orient="records"),
            }
        )
    else:
        click.echo(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))


@click.command("analyses")
def list_analyses():
    """List the analyses with what each estimates."""
    from trialsim.analyse.registry import ANALYSES

    for a in ANALYSES.values():
        click.echo(f"{a.name:<16} {a.description}")
