"""`trialsim report`: Markdown and standalone HTML report of a results folder."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import force_option, friendly, refuse_overwrite_in


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--currency",
    default=None,
    metavar="CODE",
    help="Currency of the budget's amounts, e.g. DKK (shown as 'DKK 2,000,000').",
)
@force_option
@friendly
def report(directory, currency, force):
    """Write DIRECTORY/report.md and DIRECTORY/report.html from the outputs found there.

    Works on any results folder (power, recruitment, compare, budget, sweep, bayes and
    assurance outputs, or a folder holding several of them). Each known output becomes a
    section that opens with a one-sentence answer, then its figure, then a compact table
    (± is one Monte Carlo SE); other JSON, CSV and PNG files are shown as they are. One
    provenance section closes the report: command lines, seeds, input hashes (SHA-256) and
    package versions. The HTML file is standalone (figures embedded) and fits an A4 page.

    Example:

    \b
      trialsim report results/sft-19m --currency DKK --force
    """
    from trialsim.report.report import write_report

    refuse_overwrite_in(directory, ("report.md", "report.html"), force, "DIRECTORY")
    md, html = write_report(directory, currency=currency)
    click.echo(f"wrote {md} and {html}")
