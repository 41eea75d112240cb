"""Sweeps: grid parsing, cell seeds, executors (process pool, a real Dask LocalCluster),
resuming, memory, and the CLI.

Oracle for the statistics: a sweep cell must equal a direct call of
simulate_operating_characteristics with the cell's scenario and seed (the sweep adds
bookkeeping, never numbers). Identity across executors and resumption is exact (bit for bit;
run times are in a separate timings.csv).
"""

import io
import json
import tomllib
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import SFT
from trialsim.cli import main
from trialsim.design.grid import (
    cell_hash,
    cell_key,
    cell_seed,
    expand_grid,
    parse_vary,
)
from trialsim.design.sweep import cell_task, run_cell, run_sweep
from trialsim.power.from_scenario import analytic_power
from trialsim.power.simulation import simulate_operating_characteristics
from trialsim.scenario import load_scenario

AXES = ["groups.icc_group=0.02,0.1", "groups.mean_size=5,8"]
REPS = 48


def _axes(specs=AXES):
    return [parse_vary(v) for v in specs]


def _same(a: pd.DataFrame, b: pd.DataFrame, *, check_dtype: bool = True) -> None:
    """Equal in every column (dtypes may differ after a CSV round trip)."""
    cols = list(a.columns)
    a, b = (
        x[cols].reset_index(drop=True).assign(error=x["error"].astype(object).fillna(""))
        for x in (a, b)
    )
    pd.testing.assert_frame_equal(a, b, check_dtype=check_dtype)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted in-process sweep every other run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    return run_sweep(SFT, _axes(), reps=REPS, out=out, seed=11, jobs=1)


# ---- grid ------------------------------------------------------------------------------------


def test_parse_vary_lists_ranges_and_strings():
    assert parse_vary("groups.icc_group=0.01,0.05,0.1").values == (0.01, 0.05, 0.1)
    assert parse_vary("groups.icc_group=0.01:0.1:4").values == (0.01, 0.04, 0.07, 0.1)
    assert parse_vary("groups.max_size=6:12:4").values == (6, 8, 10, 12)
    axis = parse_vary("design.randomisation=individual,cohort")
    assert axis.values == ("individual", "cohort") and not axis.numeric


@pytest.mark.parametrize(
    "text", ["groups.icc_group", "=0.1", "groups.icc_group=a:b:3", "x=0:1:0", "x=1,1.0"]
)
def test_parse_vary_rejects_bad_input(text):
    with pytest.raises(ValueError, match="--vary"):
        parse_vary(text)


def test_grid_is_the_product_in_row_major_order():
    grid = expand_grid(_axes(["a=1,2", "b=x,y,z"]))
    assert grid == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]


def test_cell_seed_depends_only_on_parameters_and_root_seed():
    a = {"groups.icc_group": 0.1, "groups.mean_size": 5}
    b = {"groups.mean_size": 5.0, "groups.icc_group": 0.10}  # same cell, other order/spelling
    assert cell_key(a) == cell_key(b) and cell_hash(a) == cell_hash(b)
    assert cell_seed(1, a) == cell_seed(1, b)
    assert cell_seed(1, a) != cell_seed(2, a)
    assert cell_seed(1, a) != cell_seed(1, {**a, "groups.mean_size": 6})
    # bit-exact against SeedSequence itself: the seed is a documented derivation
    import hashlib

    digest = hashlib.sha256(cell_key(a).encode()).digest()
    ss = np.random.SeedSequence(entropy=(1, int.from_bytes(digest[:16], "little")))
    assert cell_seed(1, a) == int(ss.generate_state(1, dtype=np.uint64)[0]) >> 1


# ---- the sweep -------------------------------------------------------------------------------


def test_cell_equals_direct_simulation(reference):
    row = reference.table.iloc[3]
    params = {
        "groups.icc_group": row["groups.icc_group"],
        "groups.mean_size": row["groups.mean_size"],
    }
    s = load_scenario(SFT, [f"{k}={v}" for k, v in params.items()])
    (oc,), _ = simulate_operating_characteristics(s, ["mixed"], reps=REPS, seed=int(row["seed"]))
    assert row["seed"] == cell_seed(11, params)
    for key in ("power", "power_mcse", "type1", "bias", "bias_mcse", "coverage", "rmse"):
        assert row[key] == pytest.approx(getattr(oc, key), abs=0, rel=0, nan_ok=True), key
    assert row["analytic_power"] == analytic_power(s)["power"]


def test_outputs_and_table_shape(reference):
    out = reference.out
    table = reference.table
    assert len(table) == 4 and reference.cells_run == 4 and reference.cells_failed == 0
    for col in (
        "groups.icc_group",
        "groups.mean_size",
        "power",
        "power_mcse",
        "type1_mcse",
        "bias_mcse",
        "coverage_mcse",
        "empirical_se_mcse",
        "seed",
        "failures",
        "null_failures",
    ):
        assert col in table.columns
    _same(pd.read_csv(out / "results.csv"), table, check_dtype=False)
    _same(pd.read_parquet(out / "results.parquet"), table)
    assert "seconds" not in table.columns  # run times vary: kept in timings.csv
    timings = pd.read_csv(out / "timings.csv")
    assert list(timings.columns) == ["cell", "seconds"] and (timings["seconds"] >= 0).all()
    assert len(list((out / "cells").glob("*.json"))) == 4
    assert (out / "power-curve-groups-icc-group.png").stat().st_size > 1000
    assert (out / "heatmap-mixed.png").stat().st_size > 1000
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["settings"]["vary"] == {"groups.icc_group": [0.02, 0.1], "groups.mean_size": [5, 8]}


def test_two_jobs_give_the_same_table(reference, tmp_path):
    result = run_sweep(SFT, _axes(), reps=REPS, out=tmp_path, seed=11, jobs=2)
    _same(result.table, reference.table)


@pytest.mark.slow  # ~10 s to start a LocalCluster; two process workers are checked by default
def test_dask_local_cluster_gives_the_same_table(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        processes=True,
        dashboard_address=None,
    ) as cluster:
        result = run_sweep(
            SFT,
            _axes(),
            reps=REPS,
            out=tmp_path,
            seed=11,
            executor="dask",
            scheduler=cluster.scheduler_address,
        )
    _same(result.table, reference.table)


def test_resume_after_interruption_equals_uninterrupted(reference, tmp_path):
    class Interrupt(Exception):
        pass

    def stop_after_two(i, record):
        if len(list((tmp_path / "cells").glob("*.json"))) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_sweep(SFT, _axes(), reps=REPS, out=tmp_path, seed=11, on_cell=stop_after_two)
    assert not (tmp_path / "results.csv").exists()  # nothing half-written
    resumed = run_sweep(SFT, _axes(), reps=REPS, out=tmp_path, seed=11, resume=True)
    assert (resumed.cells_reused, resumed.cells_run) == (2, 2)
    _same(resumed.table, reference.table)
    # deleting a finished cell: resume recomputes exactly that one
    next((tmp_path / "cells").glob("*.json")).unlink()
    again = run_sweep(SFT, _axes(), reps=REPS, out=tmp_path, seed=11, resume=True)
    assert (again.cells_reused, again.cells_run) == (3, 1)
    _same(again.table, reference.table)


def test_other_settings_in_the_folder_are_refused(reference):
    for kwargs in ({"reps": REPS + 1}, {"seed": 12}, {"resume": True, "reps": REPS + 1}):
        settings = {"reps": REPS, "seed": 11, **kwargs}
        with pytest.raises(ValueError, match="different settings"):
            run_sweep(SFT, _axes(), out=reference.out, plots=False, **settings)


def test_settings_without_results_do_not_block(tmp_path):
    """A run that failed before its first cell (e.g. no scheduler) leaves only sweep.json."""
    (tmp_path / "sweep.json").write_text(json.dumps({"settings": {"reps": 999}}))
    result = run_sweep(SFT, _axes(["groups.icc_group=0.05"]), reps=4, out=tmp_path, plots=False)
    assert result.cells_run == 1


def test_failing_cell_is_reported_not_saved(tmp_path):
    result = run_sweep(
        SFT,
        _axes(["groups.icc_group=0.05"]),
        reps=8,
        out=tmp_path,
        analyses=["mixed-cluster"],
        plots=False,
    )
    assert result.cells_failed == 1
    assert "randomised clusters" in result.table.loc[0, "error"]
    assert not list((tmp_path / "cells").glob("*.json"))


def test_memory_is_flat_in_replicates():
    """Peak traced memory at 4x the replicates stays within 25 % (chunks of 32 replicates).

    One thread: with T threads T chunks are in flight, so the peak is at most T times one
    chunk's, but when the threads' peaks coincide is a matter of timing."""
    raw = tomllib.loads(SFT.read_text())
    settings = {"seed": 1, "reps": 0, "analyses": ["mixed"], "outcome": None, "alpha": 0.05}

    def peak(reps):
        task = cell_task(raw, {"groups.icc_group": 0.05}, dict(settings, reps=reps), 32, SFT)
        task["threads"] = 1
        tracemalloc.start()
        record = run_cell(task)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert record["error"] is None
        return top

    small, large = peak(64), peak(256)
    assert large < 1.25 * small, (small, large)


# ---- CLI -------------------------------------------------------------------------------------


def test_cli_sweep_writes_table(tmp_path):
    out = tmp_path / "sw"
    args = [
        "sweep",
        str(SFT),
        "--vary",
        "groups.icc_group=0:0.1:2",
        "--reps",
        "16",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "power" in result.output and (out / "results.csv").is_file()
    again = CliRunner().invoke(main, [*args, "--resume", "--format", "csv"])
    assert again.exit_code == 0, again.output
    assert "2 reused" in again.output
    _same(
        pd.read_csv(out / "results.csv"), pd.read_csv(io.StringIO(again.stdout)), check_dtype=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vary", "groups.icc_group"], "expected KEY=VALUES"),
        (["--vary", "groups.icc_group=1.5"], "groups.icc_group"),
        (["--vary", "groups.icc_group=0.1", "--scheduler", "tcp://x:1"], "--executor dask"),
    ],
)
def test_cli_sweep_bad_input_is_one_line(tmp_path, args, message):
    result = CliRunner().invoke(
        main, ["sweep", str(SFT), *args, "--reps", "4", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results.csv").exists()


# ---- sample sizes ----------------------------------------------------------------------------


def test_vary_sample_size_scale_and_refusal_of_a_split_list():
    assert parse_vary("sites.participants=scale:0.5:2:4").key == "participants_scale"
    assert parse_vary("sites.participants=scale:0.5:2:4").values == (0.5, 1.0, 1.5, 2.0)
    with pytest.raises(ValueError, match="scale:0.5:2:4"):
        parse_vary("sites.participants=30,40")
    with pytest.raises(ValueError, match="applies to sites.participants"):
        parse_vary("groups.mean_size=scale:1:2:2")


def test_cells_differing_only_in_sample_size_share_their_seed():
    raw = tomllib.loads(SFT.read_text())
    settings = {"seed": 3, "reps": 10, "analyses": [], "outcome": None, "alpha": 0.05}
    a = cell_task(raw, {"n_groups": 20, "groups.icc_group": 0.05}, settings, 32, SFT)
    b = cell_task(raw, {"n_groups": 40, "groups.icc_group": 0.05}, settings, 32, SFT)
    c = cell_task(raw, {"n_groups": 20, "groups.icc_group": 0.1}, settings, 32, SFT)
    assert a["seed"] == b["seed"] != c["seed"]
    assert sum(b["raw"]["sites"]["participants"]) > 1.9 * sum(a["raw"]["sites"]["participants"])
    assert b["raw"]["groups"]["icc_group"] == 0.05


def test_a_sweep_whose_every_cell_failed_exits_non_zero(tmp_path):
    """The cluster model on individually randomised trials cannot be fitted in any cell: the
    table records each cell's error and the command exits 1 (it used to exit 0)."""
    out = tmp_path / "sweep"
    args = ["sweep", str(SFT), "--vary", "groups.icc_group=0.05,0.1", "--reps", "20"]
    result = CliRunner().invoke(main, [*args, "--analysis", "mixed-cluster", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "error: every one of the 2 cells failed" in result.stderr
    table = pd.read_csv(out / "results.csv")
    assert table["error"].str.contains("randomised clusters").all()
