"""`trialsim simulate`: replicate trials of a scenario written as a tidy table."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import (
    InputError,
    friendly,
    reps_option,
    scenario_argument,
    seed_option,
    set_option,
)
from trialsim.scenario import load_scenario


@click.command()
@scenario_argument
@reps_option(100)
@seed_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output table: FILE.csv or FILE.parquet (long format, one row per participant per visit).",
)
@click.option(
    "--outcomes",
    default=None,
    metavar="NAMES",
    help="Comma-separated subset of the scenario's outcomes (default: all).",
)
@set_option
@friendly
def simulate(
    scenario: Path,
    reps: int,
    seed: int,
    out: Path,
    outcomes: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Simulate replicate trials of SCENARIO and write them as a tidy table.

    Columns: rep, participant, municipality, arm, group, trainer, visit, month, one column per
    outcome, sessions_offered, sessions_attended, assessor_blinded. Missing measurements
    (dropout) are empty cells. Replicate r is identical for the same --seed however many
    replicates are drawn. Beside the table, OUT.trialsim.json records the trial structure
    (arms, outcome types and scales, covariates) and how the data were made.

    Example: trialsim simulate scenarios/sft-19m.toml --reps 10 --out sft.csv
    """
    from trialsim.data import write_table
    from trialsim.report.progress import progress_bar
    from trialsim.simulate import simulate_trials

    if out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"--out {out}: use a .csv or .parquet file name")
    s = load_scenario(scenario, overrides)
    if outcomes:
        s = s.with_outcomes([name.strip() for name in outcomes.split(",")])
    with progress_bar(reps, "simulating") as advance:
        data = simulate_trials(s, reps, seed=seed, progress=advance)
    frame = data.to_frame()
    write_table(frame, out)
    sidecar = write_sidecar(out, s, scenario_path=scenario, seed=seed, reps=reps)
    click.echo(
        f"wrote {len(frame):,} rows ({reps} replicates x {data.n_participants} "
        f"participants x {data.n_visits} visits) to {out}; structure in {sidecar.name}"
    )


#: suffix of the file written beside simulated data: ``<data path>.trialsim.json``
SIDECAR_SUFFIX = ".trialsim.json"


def sidecar_path(out: Path) -> Path:
    """``<out>.trialsim.json``, beside the data file."""
    return out.with_name(out.name + SIDECAR_SUFFIX)


def write_sidecar(out: Path, s, *, scenario_path: Path, seed: int, reps: int) -> Path:
    """Write the trial structure (arms, outcome types, names) and provenance of simulated
    data beside it, atomically: ``{"structure": ..., "provenance": ...}``."""
    import json

    from trialsim.files import atomic_path, to_json
    from trialsim.report.provenance import build_provenance
    from trialsim.structure import structure_to_dict

    record = {
        "structure": structure_to_dict(s.structure),
        "provenance": build_provenance(
            command="simulate",
            scenario_path=scenario_path,
            scenario=s,
            seed=seed,
            reps=reps,
            out=str(out),
            outcomes=list(s.outcomes),
        ),
    }
    path = sidecar_path(out)
    text = to_json(record)
    json.loads(text)  # the reader parses plain JSON: fail here, not there
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path
