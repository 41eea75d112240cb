"""`trialsim sweep`: operating characteristics over a grid of scenario assumptions."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from trialsim.cli.common import (
    InputError,
    RunFailed,
    alpha_option,
    df_option,
    emit,
    force_option,
    format_option,
    formula_option,
    friendly,
    out_option,
    outcome_option,
    reps_option,
    scenario_argument,
    seed_option,
    set_option,
)
from trialsim.errors import UserError


def _axes(ctx, param, values):
    from trialsim.design.grid import parse_vary

    try:
        return [parse_vary(v) for v in values]
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@scenario_argument
@click.option(
    "--vary",
    "axes",
    multiple=True,
    required=True,
    callback=_axes,
    metavar="KEY=VALUES",
    help="A scenario key and its values: a list 0.01,0.05,0.1 or a range start:stop:n "
    "(repeatable; the grid is the product). Sample sizes: n_participants, n_groups, "
    "group_size, or sites.participants=scale:0.5:2:4 (factors); cells differing only in "
    "sample size share their seed (common random numbers along the curve).",
)
@reps_option(500, timed=True)
@click.option(
    "--analysis",
    "analyses",
    multiple=True,
    metavar="NAME",
    help="Analysis to score (repeatable; default: the one rule on each cell's trial "
    "structure and outcome, printed with the results).",
)
@outcome_option
@formula_option
@alpha_option
@seed_option
@click.option(
    "--jobs", default=1, show_default=True, type=click.IntRange(1), help="Worker processes."
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: a process pool on this machine; dask: a Dask cluster (--scheduler) or a "
    "local Dask cluster of --jobs workers.",
)
@click.option(
    "--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.5:8786."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the sweep in --out: keep its finished cells, run the rest.",
)
@out_option(
    "folder",
    "for results.csv, results.parquet, timings.csv, the figures, provenance.json and the "
    "finished cells (default: results/<scenario>/sweep).",
)
@force_option
@df_option
@format_option
@set_option
@friendly
def sweep(
    scenario,
    axes,
    reps,
    analyses,
    outcome,
    formula,
    alpha,
    seed,
    jobs,
    executor,
    scheduler,
    resume,
    out,
    force,
    df_method,
    fmt,
    csv_dialect,
    overrides,
):
    """Simulate SCENARIO over a grid of assumptions: one row per cell in OUT/results.csv.

    Each cell (one combination of the --vary values) gets power, type-I error, bias,
    empirical SE, RMSE and coverage with Monte Carlo SEs, its seed, run time and failure
    counts; OUT also gets results.parquet, power curves and heatmaps (PNG) and
    provenance.json. A cell's seed derives from its parameters and --seed, so the table is
    the same for any --jobs, executor or order. Finished cells are saved as they finish
    (OUT/cells/); after an interruption, rerun with --resume. A folder holding a sweep is
    not overwritten: --resume continues it, --force starts it again.

    Examples:

    \b
      trialsim sweep scenarios/sft-19m.toml --vary groups.icc_group=0:0.1:5 \\
        --vary groups.mean_size=5,6.3,8 --reps 1000 --jobs 2 --out results/icc-sweep --force

    \b
      trialsim sweep scenarios/sft-19m.toml --vary design.randomisation=individual,cohort \\
        --reps 500 --executor dask --scheduler tcp://10.0.0.5:8786 --out results/designs \\
        --force
    """
    from trialsim.design.sweep import format_sweep, run_sweep
    from trialsim.report.progress import progress_bar
    from trialsim.scenario import load_scenario

    if scheduler and executor != "dask":
        raise InputError("--scheduler needs --executor dask")
    s = load_scenario(scenario, overrides)
    out = out or Path("results") / s.name / "sweep"
    _prepare_folder(out, resume, force)
    n_cells = 1
    for axis in axes:
        n_cells *= len(axis.values)
    try:
        with progress_bar(n_cells * reps, f"{n_cells} cells x {reps} replicates") as advance:
            result = run_sweep(
                scenario,
                axes,
                reps=reps,
                out=out,
                seed=seed,
                analyses=analyses,
                formula=formula,
                outcome=outcome,
                alpha=alpha,
                overrides=overrides,
                jobs=jobs,
                executor=executor,
                scheduler=scheduler,
                resume=resume,
                progress=advance,
                csv_dialect=csv_dialect,
                df=df_method,
            )
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: finished cells are saved in {out}/cells; rerun with --resume", err=True
        )
        sys.exit(130)
    except (OSError, TimeoutError) as exc:
        if executor == "dask":
            raise InputError(
                f"--scheduler {scheduler}: cannot use the Dask cluster ({exc})"
            ) from None
        raise
    from trialsim.power.simulation import estimand_note

    for name in analyses:
        note = estimand_note(s, outcome or s.primary, name)
        if note is not None:
            click.echo(f"note: {note}", err=True)
    table = result.table
    emit(
        fmt,
        text=lambda: format_sweep(table, [a.key for a in axes], alpha),
        record=table.to_dict("records"),
        rows=table,
        csv_dialect=csv_dialect,
    )
    click.echo(
        f"{result.cells_run} cells run, {result.cells_reused} reused, {result.cells_failed} "
        f"failed (see the error column); outputs in {out}/",
        err=True,
    )
    n_cells = result.cells_run + result.cells_reused
    if n_cells and result.cells_failed == n_cells:
        raise RunFailed(
            f"every one of the {n_cells} cells failed (see the error column of {out}/results.csv)"
        )


def _prepare_folder(out: Path, resume: bool, force: bool) -> None:
    """One overwrite policy: a folder holding a sweep is continued (--resume), started again
    (--force: its finished cells are removed) or refused (exit 2, nothing touched)."""
    from trialsim.design.sweep import holds_sweep, remove_cells

    if resume and force:
        raise InputError("--resume continues the sweep in --out, --force starts it again: give one")
    if resume or not holds_sweep(out):
        return
    if not force:
        raise InputError(
            f"{out} holds a sweep; add --resume to continue it, --force to start it again, or "
            "choose another --out"
        )
    remove_cells(out)
