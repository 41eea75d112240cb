"""Reading real trial-data files: formats, dialects, mapping, wide layout (trialsim.io).

The oracle for every reader is the simulator's own TrialData: a simulated trial written in a
format and read back must give the same arrays (exactly, or to the precision written).
"""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from trialsim.data import read_trial_data, write_table
from trialsim.io import check_trial_file, load_trial_frame, parse_mapping
from trialsim.io.readers import read_table, sniff_dialect
from trialsim.scenario import load_scenario
from trialsim.simulate import simulate_trials

from .conftest import ROOT, scenario

EXAMPLE = ROOT / "scenarios" / "data" / "sft-example.csv"
EXAMPLE_MAP = (
    "participant=deltager,municipality=kommune,arm=gruppe,group=hold,trainer=træner,"
    "sessions_offered=tilbudt,sessions_attended=fremmøde"
)


@pytest.fixture(scope="module")
def trial():
    """One simulated SFT trial (PSP, WHO-5, EQ-5D) and its long table without ``rep``."""
    data = simulate_trials(scenario(outcomes=("psp", "who5", "eq5d")), [0], seed=5)
    return data, data.to_frame().drop(columns="rep")


def assert_same_trial(a, b, *, atol=0.0):
    assert a.design == b.design
    assert a.site_names == b.site_names
    assert b.structure.site == "municipality"
    np.testing.assert_array_equal(a.site, b.site)
    np.testing.assert_array_equal(a.arm, b.arm)
    assert b.structure.reference in ("control", "Kontrol")
    np.testing.assert_array_equal(a.sessions_attended, b.sessions_attended)
    np.testing.assert_array_equal(a.observed, b.observed)
    # group ids may be renumbered: the partition must be the same
    pairs = set(zip(a.group[0], b.group[0], strict=True))
    assert len(pairs) == len(np.unique(a.group[0]))
    for name, y in a.outcomes.items():
        np.testing.assert_allclose(b.outcomes[name], y, atol=atol, equal_nan=True)


def test_sniff_danish_and_standard_dialects():
    danish = "deltager;kommune;EQ5D_0\n1;M1;0,7\n2;M2;0,65\n"
    assert sniff_dialect(danish) == (";", ",")
    assert sniff_dialect("a,b,c\n1,2.5,3\n") == (",", ".")
    # a ';' file with decimal points keeps them
    assert sniff_dialect("a;b\n1;2.5\n") == (";", ".")
    assert sniff_dialect("a\tb\n1\t2,5\n") == ("\t", ",")


@pytest.mark.parametrize("fmt", ["csv", "danish-csv", "parquet", "xlsx", "dta", "sav"])
def test_every_format_reads_back_the_simulated_trial(fmt, trial, tmp_path):
    data, frame = trial
    frame = frame.assign(assessor_blinded=frame["assessor_blinded"].astype(float))
    path = tmp_path / f"trial.{fmt.split('-')[-1]}"
    if fmt == "csv":
        write_table(frame, path)
    elif fmt == "danish-csv":
        frame.to_csv(path, sep=";", decimal=",", index=False, encoding="cp1252")
        assert ";" in path.read_text(encoding="cp1252").splitlines()[1]
    elif fmt == "parquet":
        write_table(frame, path)
    elif fmt == "xlsx":
        frame.to_excel(path, index=False, engine="openpyxl")
    elif fmt == "dta":
        numeric = frame.assign(
            group=frame["group"].astype(float), trainer=frame["trainer"].astype(float)
        )
        numeric.to_stata(path, write_index=False, version=118)
    else:
        import pyreadstat

        numeric = frame.assign(
            group=frame["group"].astype(float), trainer=frame["trainer"].astype(float)
        )
        pyreadstat.write_sav(numeric, str(path))
    assert_same_trial(data, read_trial_data(path))


def test_stata_value_labels_become_arm_labels(trial, tmp_path):
    """Stata files store arms as labelled integers; the labels (Danish here) are kept, and
    Kontrol is recognised as the reference."""
    data, frame = trial
    coded = frame.drop(columns="assessor_blinded").assign(
        arm=pd.Categorical(frame["arm"].map({"treatment": "SFT", "control": "Kontrol"})),
        group=frame["group"].astype(float),
        trainer=frame["trainer"].astype(float),
    )
    path = tmp_path / "trial.dta"
    coded.to_stata(path, write_index=False)
    read = read_trial_data(path)
    assert read.structure.arms == ("Kontrol", "SFT")
    assert_same_trial(data, read)


def _load_example_script():
    spec = importlib.util.spec_from_file_location(
        "make_example_data", ROOT / "scripts" / "make_example_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_danish_wide_export_reads_back_the_simulated_trial(tmp_path):
    """The example generator's export (wide, Danish names, ';', decimal commas, cp1252)
    read with --map gives the trial the simulator made; EQ-5D was written to 4 digits."""
    script = _load_example_script()
    path = tmp_path / "export.csv"
    script.write_danish_csv(script.example_frame(), path)
    s = load_scenario(ROOT / "scenarios" / "sft-19m.toml").with_outcomes(list(script.OUTCOMES))
    truth = simulate_trials(s, [0], seed=script.SEED)
    read = read_trial_data(path, EXAMPLE_MAP)
    assert list(read.outcomes) == list(script.OUTCOMES)
    assert_same_trial(truth, read, atol=5e-4)
    assert read.visit_months.tolist() == [0.0, 1.0, 2.0]  # no month column: visit numbers


def test_committed_example_file_is_valid_with_the_documented_map():
    table = check_trial_file(EXAMPLE, EXAMPLE_MAP)
    assert table.ok, table.problem_lines()
    assert table.wide
    people = table.frame.drop_duplicates("participant")
    assert len(people) == 340 and table.frame["visit"].nunique() == 3
    assert set(people["arm"]) == {"Kontrol", "SFT"}
    assert (table.frame["rep"] == 0).all()  # real data: one replicate


def test_wide_numbered_columns_and_missing_visit_rows(trial, tmp_path):
    """psp_0/psp_1/psp_2 wide columns, and a long file missing rows of dropped-out visits,
    both give the same trial as the complete long table."""
    data, frame = trial
    long = frame.drop(columns=["assessor_blinded", "month"])
    person = long[long["visit"] == 0].drop(columns=["visit", "psp", "who5", "eq5d"])
    wide = person.reset_index(drop=True)
    for name in ("psp", "who5", "eq5d"):
        values = long[name].to_numpy().reshape(len(wide), 3)
        for v in range(3):
            wide[f"{name.upper()}_{v}"] = values[:, v]
    write_table(wide, tmp_path / "wide.csv")
    assert_same_trial(data, read_trial_data(tmp_path / "wide.csv"))

    sparse = long[long[["psp", "who5", "eq5d"]].notna().any(axis=1)]
    assert len(sparse) < len(long)
    write_table(sparse, tmp_path / "sparse.csv")
    assert_same_trial(data, read_trial_data(tmp_path / "sparse.csv", wide=False))


def test_mapping_renames_columns_and_arm_labels(trial, tmp_path):
    data, frame = trial
    renamed = frame.rename(columns={"psp": "PSP_total", "arm": "randomisering"}).assign(
        randomisering=frame["arm"].map({"treatment": "Gruppe A", "control": "Gruppe B"})
    )
    write_table(renamed, tmp_path / "t.csv")
    mapping = "psp=PSP_total,arm=randomisering,treatment=Gruppe A,control=Gruppe B"
    read = read_trial_data(tmp_path / "t.csv", mapping)
    assert read.structure.arms == ("control", "treatment")  # the old label syntax relabels
    assert_same_trial(data, read)
    cmap = parse_mapping(mapping)
    assert cmap.columns == {"psp": "PSP_total", "arm": "randomisering"}
    assert cmap.arm_labels == {"gruppe a": "treatment", "gruppe b": "control"}


def test_mapping_errors_name_the_fix(trial, tmp_path):
    _, frame = trial
    write_table(frame, tmp_path / "t.csv")
    with pytest.raises(ValueError, match=r"unknown role 'partcipant'.*did you mean 'participant'"):
        parse_mapping("partcipant=id")
    assert parse_mapping("pps=PSP_total").columns == {"pps": "PSP_total"}  # renames an outcome
    with pytest.raises(ValueError, match=r"expected target=source"):
        parse_mapping("psp")
    with pytest.raises(ValueError, match=r"no column 'ps'; did you mean 'psp'"):
        load_trial_frame(tmp_path / "t.csv", "psp=ps")


def test_unreadable_and_unknown_files_give_one_line(tmp_path):
    with pytest.raises(ValueError, match="no such data file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"unknown data format '.json'"):
        read_table(tmp_path / "x.json")
    (tmp_path / "bad.xlsx").write_text("not a spreadsheet")
    with pytest.raises(ValueError, match=r"bad.xlsx: cannot read as a table") as err:
        read_table(tmp_path / "bad.xlsx")
    assert "\n" not in str(err.value)


def test_simulated_batches_keep_their_replicates(tmp_path):
    """Existing callers: a simulated long CSV with 'rep' reads back every replicate."""
    data = simulate_trials(scenario(), 3, seed=2)
    write_table(data.to_frame(), tmp_path / "sim.csv")
    back = read_trial_data(tmp_path / "sim.csv")
    assert back.n_reps == 3
    np.testing.assert_array_equal(back.visit_months, data.visit_months)  # from 'month'
    np.testing.assert_allclose(back.outcomes["psp"], data.outcomes["psp"], equal_nan=True)
    np.testing.assert_array_equal(back.arm, data.arm)


def test_analyse_command_reads_the_example_with_map():
    """`trialsim analyse --map` on the Danish wide export equals the analysis of the
    simulator's own arrays (oracle: the registry analysis on TrialData)."""
    from click.testing import CliRunner

    from trialsim.analyse.registry import get_analysis
    from trialsim.cli import main

    result = CliRunner().invoke(
        main,
        ["analyse", str(EXAMPLE), "--map", EXAMPLE_MAP, "--outcome", "psp", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["results"][0]
    expected = get_analysis("mixed").run(read_trial_data(EXAMPLE, EXAMPLE_MAP), "psp")
    assert row["estimate"] == pytest.approx(float(expected.estimate[0]), rel=1e-12)
    unmapped = CliRunner().invoke(main, ["analyse", str(EXAMPLE)])
    assert unmapped.exit_code == 2
    assert "required column 'arm' is missing" in unmapped.output
