"""`trialsim simulate`: replicate trials of a scenario written as a tidy table."""

from __future__ import annotations

from pathlib import Path

import click

from trialsim.cli.common import (
    csv_dialect_option,
    force_option,
    friendly,
    out_option,
    refuse_overwrite,
    reps_option,
    scenario_argument,
    seed_option,
    set_option,
)
from trialsim.scenario import load_scenario


@click.command()
@scenario_argument
@reps_option(100, timed=True)
@seed_option
@out_option(
    "file",
    "(.csv or .parquet): the table, long format, one row per participant per visit (its "
    "structure and provenance beside it in FILE.trialsim.json).",
    suffixes=(".csv", ".parquet"),
    required=True,
)
@click.option(
    "--outcomes",
    default=None,
    metavar="NAMES",
    help="Comma-separated subset of the scenario's outcomes (default: all).",
)
@force_option
@csv_dialect_option
@set_option
@friendly
def simulate(
    scenario: Path,
    reps: int,
    seed: int,
    out: Path,
    outcomes: str | None,
    force: bool,
    csv_dialect: str,
    overrides: tuple[str, ...],
) -> None:
    """Simulate replicate trials of SCENARIO and write them as a tidy table.

    Columns: rep, participant, municipality, arm, group, trainer, visit, month, one column per
    outcome, sessions_offered, sessions_attended, assessor_blinded. Missing measurements
    (dropout) are empty cells. Replicate r is identical for the same --seed however many
    replicates are drawn. Beside the table, OUT.trialsim.json records the trial structure
    (arms, outcome types and scales, covariates) and how the data were made (command line,
    package versions, scenario SHA-256, seed); a .parquet table carries the same record in its
    metadata (key "trialsim").

    \b
    Examples:
      trialsim simulate scenarios/sft-19m.toml --reps 10 --out sft.csv --force
      trialsim simulate scenarios/sft-19m.toml --reps 10 --outcomes psp,mhrm \\
        --out sft.parquet --force
    """
    from trialsim.files import to_json, write_table_chunks
    from trialsim.heap import keep_heap_flat
    from trialsim.parallel import thread_count
    from trialsim.report.progress import progress_bar
    from trialsim.seeds import BLOCK_SIZE
    from trialsim.simulate import simulate_trials

    refuse_overwrite([out, sidecar_path(out)], force)
    s = load_scenario(scenario, overrides)
    if outcomes:
        s = s.with_outcomes([name.strip() for name in outcomes.split(",")])
    record = sidecar_record(out, s, scenario_path=scenario, seed=seed, reps=reps)
    metadata = None
    if out.suffix.lower() == ".parquet":
        metadata = {PARQUET_METADATA_KEY: to_json(record).encode()}
    # replicates stream to the table chunk by chunk: memory does not grow with --reps
    chunk, shape = BLOCK_SIZE * thread_count(None), {}
    keep_heap_flat()

    def frames(advance):
        for start in range(0, reps, chunk):
            part = range(start, min(start + chunk, reps))
            data = simulate_trials(s, part, seed=seed, progress=advance)
            shape.update(n=data.n_participants, v=data.n_visits)
            yield data.to_frame()

    with progress_bar(reps, "simulating") as advance:
        rows = write_table_chunks(out, frames(advance), metadata=metadata, csv_dialect=csv_dialect)
    sidecar = write_sidecar_record(out, record)
    click.echo(
        f"wrote {rows:,} rows ({reps} replicates x {shape['n']} "
        f"participants x {shape['v']} visits) to {out}; structure in {sidecar.name}"
    )


#: suffix of the file written beside simulated data: ``<data path>.trialsim.json``
SIDECAR_SUFFIX = ".trialsim.json"


def sidecar_path(out: Path) -> Path:
    """``<out>.trialsim.json``, beside the data file."""
    return out.with_name(out.name + SIDECAR_SUFFIX)


#: key of the Parquet schema metadata holding the sidecar's record (structure, provenance)
PARQUET_METADATA_KEY = b"trialsim"


def sidecar_record(out: Path, s, *, scenario_path: Path, seed: int, reps: int) -> dict:
    """``{"structure": ..., "provenance": ...}`` of simulated data: the trial structure (arms,
    outcome types, names) and how the data were made (command line, package versions,
    scenario SHA-256, seed, replicates)."""
    from trialsim.report.provenance import build_provenance
    from trialsim.structure import structure_to_dict

    return {
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


def write_sidecar(out: Path, s, *, scenario_path: Path, seed: int, reps: int) -> Path:
    """Write the trial structure (arms, outcome types, names) and provenance of simulated
    data beside it, atomically: ``{"structure": ..., "provenance": ...}``."""
    record = sidecar_record(out, s, scenario_path=scenario_path, seed=seed, reps=reps)
    return write_sidecar_record(out, record)


def write_sidecar_record(out: Path, record: dict) -> Path:
    """Write ``record`` to ``<out>.trialsim.json`` atomically."""
    import json

    from trialsim.files import atomic_path, to_json

    path = sidecar_path(out)
    text = to_json(record)
    json.loads(text)  # the reader parses plain JSON: fail here, not there
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def write_parquet_with_metadata(frame, out: Path, record: dict) -> Path:
    """Write ``frame`` as Parquet, atomically, with ``record`` (the sidecar's JSON) in the
    file's schema metadata under the key ``trialsim``, so the provenance travels with the
    file: ``pyarrow.parquet.read_schema(path).metadata[b"trialsim"]``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trialsim.files import atomic_path, to_json

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), PARQUET_METADATA_KEY: to_json(record).encode()}
    table = table.replace_schema_metadata(metadata)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return out
