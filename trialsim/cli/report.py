"""`trialsim report`: Markdown and standalone HTML report of a results folder."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import friendly


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@friendly
def report(directory):
    """Write DIRECTORY/report.md and DIRECTORY/report.html from the outputs found there.

    Works on any results folder (power, compare, budget, sweep outputs, or a folder holding
    several of them): JSON and CSV files become tables, PNG figures are linked (Markdown) or
    embedded (HTML, one standalone file), and every provenance.json becomes a provenance
    section: command line, seed, scenario file and SHA-256, package versions.

    Example:

    \b
      trialsim report results/sft-19m
    """
    from trialsim.report.report import write_report

    md, html = write_report(directory)
    click.echo(f"wrote {md} and {html}")
