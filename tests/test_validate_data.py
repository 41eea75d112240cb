"""`trialsim validate DATA`: every problem one line with row and column, exit 2, nothing written.

tests/data/broken-trial.csv holds one instance of each problem (rows as a spreadsheet shows
them: header = row 1); the expected lines below are its answer key.
"""

import pandas as pd
import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.data import read_trial_data, write_table
from trialsim.io import Declarations, check_trial_file

from .conftest import ROOT, SFT

BROKEN = ROOT / "tests" / "data" / "broken-trial.csv"
EXAMPLE = ROOT / "scenarios" / "data" / "sft-example.csv"
EXAMPLE_MAP = (
    "participant=deltager,municipality=kommune,arm=gruppe,group=hold,trainer=træner,"
    "sessions_offered=tilbudt,sessions_attended=fremmøde"
)

EXPECTED = [
    "column 'assesor_blinded' looks like a misspelt 'assessor_blinded' and is ignored",
    "row 13, column arm: participant 6 changes arm between visits ('kontroll')",
    "row 10, column psp: 'abc' is not a number",
    "row 11, column psp: 150 is outside the scale [1, 100]",
    "row 9, column visit: participant 4 has visit 0 twice (also row 8)",
    "row 4, column sessions_attended: attended 40 sessions but only 36 were offered",
    "row 5, column sessions_attended: attended 40 sessions but only 36 were offered",
    "row 6, column group: group 1 spans arms (treatment, control",
    "row 12, column group: group 2 spans arms (treatment, control",
    "row 16, column group: group 1 spans more than one municipality (M1, M3)",
]
# psp's scale [1, 100] is declared by the scenario (nothing is range-checked otherwise)
BOUNDS = ("--scenario", SFT)


def run(*args):
    return CliRunner().invoke(main, ["validate", *map(str, args)])


def test_broken_file_lists_every_problem_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(BROKEN, *BOUNDS)
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert all(line.startswith(f"error: {BROKEN}") for line in lines)
    for expected in EXPECTED:
        assert sum(expected in line for line in lines) == 1, expected
    assert len(lines) == len(EXPECTED)
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_read_trial_data_refuses_the_broken_file_with_a_count():
    with pytest.raises(ValueError, match=r"\(and 8 more problems: run 'trialsim validate'\)"):
        read_trial_data(BROKEN)  # without the scenario psp=150 is not out of range


def test_unmapped_export_suggests_each_map():
    result = run(EXAMPLE)
    assert result.exit_code == 2
    assert "required column 'arm' is missing" in result.output
    assert "map it with --map arm=gruppe" in result.output
    assert "ignored columns: deltager (numeric, one value per person), kommune (text)" in (
        result.output
    )
    assert result.output.strip().splitlines()[-1] == (
        "hint: try --map arm=gruppe,participant=deltager,municipality=kommune,group=hold,"
        "trainer=træner,sessions_offered=tilbudt,sessions_attended=fremmøde"
    )
    assert "DESIGN.md" not in result.output


def test_example_with_map_is_valid():
    result = run(EXAMPLE, "--map", EXAMPLE_MAP)
    assert result.exit_code == 0, result.output
    assert "valid trial data" in result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("wide layout")
    assert "arms: Kontrol (reference), SFT; allocation 50% / 50%" in lines
    assert "delivery groups: in SFT only (partially nested), trainers recorded" in lines
    assert "participants: 340 (Kontrol 170, SFT 170); municipality: 9; groups: 27" in lines


def test_scenario_files_still_validate():
    ok = run(SFT)
    assert ok.exit_code == 0 and "valid scenario 'sft-19m'" in ok.output
    bad = run(SFT, "--set", "groups.icc_group=1.5")
    assert bad.exit_code == 2 and "groups.icc_group" in bad.output
    mixed = run(SFT, "--map", "psp=x")
    assert mixed.exit_code == 2 and "apply to data files" in mixed.output


def _frame(**changes):
    """A valid 4-person, 2-visit long table, with columns replaced by ``changes``."""
    base = pd.DataFrame(
        {
            "participant": [1, 1, 2, 2, 3, 3, 4, 4],
            "municipality": ["M1"] * 8,
            "arm": ["treatment"] * 4 + ["control"] * 4,
            "group": [1, 1, 1, 1, None, None, None, None],
            "visit": [0, 1] * 4,
            "psp": [50, 52, 47, 49, 51, 50, 46, 48],
        }
    )
    return base.assign(**changes)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({}, None),
        ({"arm": ["treatment"] * 8, "group": [1] * 8}, "column arm: only one arm (treatment)"),
        ({"group": [1, 1, 1, 1, 2, 2, None, None]}, None),  # control groups are fine
        ({"arm": ["A"] * 4 + ["B"] * 4}, "cannot tell which arm is the reference"),
        ({"visit": [0] * 8, "participant": range(8)}, "no follow-up rows"),
        (
            {"psp": [50, None, 47, None, 51, None, 46, None]},
            "no outcome is measured at any follow-up",
        ),
        ({"visit": [0, 1.5] * 4}, "row 3, column visit: 1.5 is not a whole number"),
        (
            {"municipality": ["M1", "M2"] + ["M1"] * 6},
            "row 3, column municipality: participant 1 changes municipality",
        ),
    ],
)
def test_design_checks(changes, message, tmp_path):
    path = tmp_path / "t.csv"
    write_table(_frame(**changes), path)
    table = check_trial_file(path)
    if message is None:
        assert table.ok, table.problem_lines()
    else:
        assert any(message in line for line in table.problem_lines()), table.problem_lines()


def test_many_bad_rows_are_counted_not_all_printed(tmp_path):
    frame = pd.concat([_frame()] * 30, ignore_index=True)
    frame["participant"] = frame.index // 2
    frame["psp"] = 500
    write_table(frame, tmp_path / "t.csv")
    declared = Declarations.from_options(bounds=("psp=1,100",))
    lines = check_trial_file(tmp_path / "t.csv", declared=declared).problem_lines()
    assert len(lines) == 11
    assert lines[-1].endswith("column psp: ... and 230 more rows with the same problem")
