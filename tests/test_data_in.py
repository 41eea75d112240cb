"""Any trial's data in: roles, any outcome, declared types, arms, groups in any arm, visits,
wide layouts, sheets, replicates, covariates and the structure `trialsim validate` prints.

Each test is a defect of the SFT-only reader (six fixed outcome names, two arms renamed to
treatment/control, municipality the only site, no groups in the control arm, the site taken
from replicate 1, ranges hard-wired to SFT scales).
"""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.data import read_trial_data, write_table
from trialsim.io import Declarations, check_trial_file, sidecar_path
from trialsim.simulate import simulate_trials
from trialsim.structure import structure_to_dict

from .conftest import ROOT, SFT, scenario

REAL = ROOT / "tests" / "data" / "real"


def declared(**options):
    return Declarations.from_options(**options)


def write(tmp_path, frame, name="t.csv"):
    path = tmp_path / name
    write_table(pd.DataFrame(frame), path)
    return path


def validate(*args):
    return CliRunner().invoke(main, ["validate", *map(str, args)])


def _long(**columns):
    """4 people, 2 visits: arms control/treatment, outcome bdi."""
    base = {
        "participant": [1, 1, 2, 2, 3, 3, 4, 4],
        "arm": ["control"] * 4 + ["treatment"] * 4,
        "visit": [0, 1] * 4,
        "bdi": [20, 18, 25, 24, 22, 15, 30, 21],
    }
    return {**base, **columns}


# ---- outcomes ------------------------------------------------------------------------------


def test_any_outcome_name_is_read(tmp_path):
    data = read_trial_data(write(tmp_path, _long()))
    assert list(data.outcomes) == ["bdi"]
    np.testing.assert_array_equal(data.outcomes["bdi"][0, :, 1], [18, 24, 15, 21])
    spec = data.structure.outcomes["bdi"]
    assert (spec.type, spec.known_from, spec.better, spec.lower) == (
        "continuous",
        "inferred",
        None,
        None,
    )


def test_zero_one_outcome_is_binary_and_a_count_is_declared(tmp_path):
    path = write(tmp_path, _long(relapse=[0, 1, 0, 0, 0, 1, 1, 1], visits=[0, 2, 1, 5, 0, 3, 2, 7]))
    st = read_trial_data(path).structure
    assert st.outcomes["relapse"].type == "binary"
    assert st.outcomes["visits"].type == "continuous"
    st = read_trial_data(
        path, declared=declared(outcome_type=("visits=count",), better=("visits=lower",))
    ).structure
    assert st.outcomes["visits"].type == "count"
    assert st.outcomes["visits"].known_from == "option"
    assert st.outcomes["visits"].better == "lower"
    # a count is a whole number >= 0
    bad = write(tmp_path, _long(visits=[0, 2, 1, -5, 0, 3, 2, 7]), "bad.csv")
    lines = check_trial_file(bad, declared=declared(outcome_type=("visits=count",))).problem_lines()
    assert any("row 5, column visits: -5 is outside the scale [0, inf]" in x for x in lines)


def test_nothing_is_range_checked_unless_bounds_are_declared(tmp_path):
    path = write(tmp_path, _long(bdi=[20, 180, 25, 24, 22, 15, 30, 21]))
    assert check_trial_file(path).ok
    lines = check_trial_file(path, declared=declared(bounds=("bdi=0,63",))).problem_lines()
    assert lines == [f"{path}, row 3, column bdi: 180 is outside the scale [0, 63]"]


def test_scenario_gives_outcome_specs(tmp_path):
    frame = _long()
    frame["psp"] = frame.pop("bdi")
    data = read_trial_data(write(tmp_path, frame), declared=declared(scenario=SFT))
    spec = data.structure.outcomes["psp"]
    assert (spec.type, spec.lower, spec.upper, spec.better, spec.known_from) == (
        "bounded",
        1.0,
        100.0,
        "higher",
        "scenario",
    )


def test_bare_better_and_mcid_apply_to_the_only_outcome():
    d = declared(better=("lower",), mcid=("3",))
    assert d.better == {None: "lower"} and d.mcid == {None: 3.0}
    assert d.better_for("bdi") == "lower"
    d = declared(better=("bdi=higher",), mcid=("bdi=2.5",))
    assert d.better_for("BDI") == "higher" and d.mcid_for("bdi") == 2.5
    with pytest.raises(ValueError, match="--outcome-type: unknown type 'ordinal'"):
        declared(outcome_type=("x=ordinal",))


def test_unmapped_text_column_is_listed_as_ignored(tmp_path):
    path = write(tmp_path, _long(note=["a", "b"] * 4))
    result = validate(path)
    assert result.exit_code == 0, result.output
    assert "ignored columns: note (text)" in result.output
    assert "outcome bdi: continuous, direction not declared (inferred)" in result.output


# ---- arms ----------------------------------------------------------------------------------


def test_arm_labels_are_kept_and_tau_is_the_reference(tmp_path):
    path = write(tmp_path, _long(arm=["TAU"] * 4 + ["BtheB"] * 4))
    data = read_trial_data(path)
    assert data.structure.arms == ("TAU", "BtheB")
    np.testing.assert_array_equal(data.arm[0], [0, 0, 1, 1])


def test_three_arms_with_a_declared_reference_and_pooling(tmp_path):
    frame = {
        "participant": range(1, 7),
        "treat": ["Cont", "CBT", "FT", "Cont", "CBT", "FT"],
        "weight_pre": [80, 81, 82, 83, 84, 85],
        "weight_post": [81, 85, 90, 82, 88, 91],
    }
    path = write(tmp_path, frame)
    with pytest.raises(ValueError, match="say it with --reference LABEL"):
        read_trial_data(path)
    data = read_trial_data(path, declared=declared(reference="Cont"))
    assert data.structure.arms == ("Cont", "CBT", "FT")
    np.testing.assert_array_equal(data.arm[0], [0, 1, 2, 0, 1, 2])
    pooled = check_trial_file(path, declared=declared(reference="Cont", pool=("active=CBT+FT",)))
    assert pooled.structure.arms == ("Cont", "active")
    assert "arms pooled: active = CBT + FT (--pool)" in pooled.describe()
    result = validate(path, "--reference", "Cont", "--pool", "active=CBT+FT")
    assert result.exit_code == 0 and "arms pooled: active = CBT + FT" in result.output


def test_control_arm_groups_are_accepted_and_described(tmp_path):
    path = write(tmp_path, _long(group=[1, 1, 1, 1, 2, 2, 2, 2], municipality=["M1"] * 8))
    table = check_trial_file(path)
    assert table.ok, table.problem_lines()
    assert table.structure.group_arms == ("control", "treatment")
    assert not table.structure.partially_nested
    assert "delivery groups: in every arm (common variance)" in table.describe()


def test_a_cluster_spanning_arms_is_a_problem(tmp_path):
    path = write(tmp_path, _long(cohort=[1, 1, 2, 2, 2, 2, 3, 3]))
    lines = check_trial_file(path).problem_lines()
    assert any("column cohort: cohort 2 spans arms" in x for x in lines), lines


def test_sites_wholly_in_one_arm_are_the_randomised_cluster(tmp_path):
    path = write(tmp_path, _long(school=["S1"] * 4 + ["S2"] * 4))
    table = check_trial_file(path)
    st = table.structure
    assert (st.site, st.cluster, st.stratified, st.label) == ("school", "school", False, "school")
    assert any("school randomised (each school wholly in one arm)" in x for x in table.describe())
    np.testing.assert_array_equal(table.data.cluster[0], table.data.site[0])


# ---- visits and layouts --------------------------------------------------------------------


def test_post_test_only_file(tmp_path):
    frame = {"school": ["A", "A", "B", "B"], "arm": ["small", "reg", "small", "reg"]}
    path = write(tmp_path, {**frame, "math": [500, 480, 510, 470]})
    data = read_trial_data(path, declared=declared(reference="reg"))
    assert data.structure.baseline is False and not data.structure.has_baseline
    assert data.n_visits == 1 and data.n_participants == 4
    table = check_trial_file(path, declared=declared(reference="reg"))
    assert "no participant column: each row is one participant" in table.describe()
    assert any("post-test only" in x for x in table.describe())


def test_wide_bdi_labels_give_months(tmp_path):
    frame = {
        "participant": [1, 2, 3, 4],
        "treatment": ["TAU", "BtheB", "TAU", "BtheB"],
        "bdi.pre": [20, 25, 22, 30],
        "bdi.2m": [18, 20, None, 21],
        "bdi.8m": [17, 15, None, None],
    }
    data = read_trial_data(write(tmp_path, frame))
    assert data.structure.visit_months == (0.0, 2.0, 8.0)
    assert data.structure.baseline
    np.testing.assert_array_equal(data.outcomes["bdi"][0, 1], [25, 20, 15])


def test_wide_number_and_unit_labels(tmp_path):
    frame = {
        "participant": [1, 2],
        "arm": ["control", "SFT"],
        "PSP 0 mdr": [50, 52],
        "PSP 9 mdr": [55, 60],
        "WHO5 uge 0": [40, 42],
        "WHO5 uge 26": [41, 50],
    }
    data = read_trial_data(write(tmp_path, frame))
    assert data.structure.visit_months == (0.0, 6.0, 9.0)  # 26 weeks = 6 months
    assert list(data.outcomes) == ["psp", "who5"]
    np.testing.assert_array_equal(data.outcomes["psp"][0, :, 2], [55, 60])


@pytest.mark.parametrize(
    "columns, message",
    [
        (("psp_0", "psp_1", "psp_-1"), "column psp_-1: visit '-1' of 'psp' is negative"),
        (("psp_0", "psp_1", "psp_1x"), "column psp_1x: cannot read '1x' as a visit of 'psp'"),
        (("psp_0", "psp_1", "psp_1.5"), "column psp_1.5: cannot read '1.5' as a visit"),
        (
            ("psp_0", "psp_1", "psp_baseline"),
            "column psp_baseline: columns 'psp_0', 'psp_baseline' name the same visit",
        ),
    ],
)
def test_unreadable_wide_visits_are_problems(columns, message, tmp_path):
    frame = {"participant": [1, 2], "arm": ["control", "treatment"]}
    frame.update({c: [1.0, 2.0] for c in columns})
    lines = check_trial_file(write(tmp_path, frame)).problem_lines()
    assert sum(message in x for x in lines) == 1, lines


def test_visit_months_option(tmp_path):
    frame = {
        "participant": [1, 2],
        "arm": ["control", "treatment"],
        "w_pre": [1, 2],
        "w_post": [2, 3],
        "w_fu": [3, 4],
    }
    path = write(tmp_path, frame)
    assert read_trial_data(path).structure.visit_months == (0.0, 1.0, 2.0)
    d = declared(visit_months=("post=3,fu=12",))
    assert read_trial_data(path, declared=d).structure.visit_months == (0.0, 3.0, 12.0)


def test_xlsx_sheet(tmp_path):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as book:
        pd.DataFrame({"x": [1]}).to_excel(book, sheet_name="notes", index=False)
        pd.DataFrame(_long()).to_excel(book, sheet_name="data", index=False)
    with pytest.raises(ValueError, match="required column 'arm'"):
        read_trial_data(path)
    data = read_trial_data(path, declared=declared(sheet="data"))
    assert list(data.outcomes) == ["bdi"]
    with pytest.raises(ValueError, match="no such sheet; the sheets are notes, data"):
        read_trial_data(path, declared=declared(sheet="other"))


# ---- replicates ----------------------------------------------------------------------------


def test_replicates_are_read_per_replicate(tmp_path):
    """Person-level fields come from each replicate, not from the first."""
    rows = []
    sites = {0: ["A", "A", "B", "B"], 1: ["B", "A", "B", "A"], 2: ["A", "B", "A", "B"]}
    arms = {0: ["c", "t", "c", "t"], 1: ["t", "c", "c", "t"], 2: ["c", "c", "t", "t"]}
    for rep in range(3):
        for i in range(4):
            for visit in (0, 1):
                rows.append(
                    {
                        "rep": rep,
                        "participant": i + 1 + 10 * rep,  # ids may differ between replicates
                        "municipality": sites[rep][i],
                        "arm": {"c": "control", "t": "treatment"}[arms[rep][i]],
                        "age": 30 + i + rep,
                        "visit": visit,
                        "psp": 50.0 + rep + i + visit,
                    }
                )
    path = write(tmp_path, rows)
    data = read_trial_data(path, declared=declared(covariate=("age",)))
    assert data.n_reps == 3 and data.n_participants == 4
    assert data.site_names == ("A", "B")
    np.testing.assert_array_equal(data.site, [[0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
    np.testing.assert_array_equal(data.arm, [[0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(data.covariates["age"][2], [32, 33, 34, 35])
    uneven = write(tmp_path, rows[:-2], "uneven.csv")
    lines = check_trial_file(uneven).problem_lines()
    assert any("every replicate must hold the same number of participants" in x for x in lines)


def test_simulated_data_with_sidecar_round_trips(tmp_path):
    """Simulated cohort data written with its structure read back the same structure."""
    s = scenario("design.randomisation=cohort")
    data = simulate_trials(s, 2, seed=3)
    path = write(tmp_path, data.to_frame(), "sim.csv")
    sidecar_path(path).write_text(json.dumps({"structure": structure_to_dict(data.structure)}))
    back = read_trial_data(path)
    for key in ("arms", "site", "cluster", "group_arms", "groups_are_clusters", "label"):
        assert getattr(back.structure, key) == getattr(data.structure, key), key
    assert back.structure.outcomes == data.structure.outcomes
    np.testing.assert_array_equal(back.arm, data.arm)
    np.testing.assert_array_equal(back.site, data.site)
    np.testing.assert_allclose(back.outcomes["psp"], data.outcomes["psp"], equal_nan=True)


def test_municipality_randomised_simulation_without_sidecar(tmp_path):
    data = simulate_trials(scenario("design.randomisation=municipality"), 1, seed=4)
    back = read_trial_data(write(tmp_path, data.to_frame(), "sim.csv"))
    st = back.structure
    assert (st.cluster, st.stratified, st.label) == ("municipality", False, "municipality")
    np.testing.assert_array_equal(back.cluster, back.site)


# ---- covariates ----------------------------------------------------------------------------


def test_covariate_levels_and_codes(tmp_path):
    path = write(tmp_path, _long(length=[">6m", ">6m", "<6m", "<6m"] * 2, age=[30, 30, 40, 40] * 2))
    data = read_trial_data(path, declared=declared(covariate=("length", "age:categorical")))
    length = data.structure.covariates["length"]
    assert (length.kind, length.levels) == ("categorical", ("<6m", ">6m"))
    np.testing.assert_array_equal(data.covariates["length"][0], [1, 0, 1, 0])
    assert data.structure.covariates["age"].levels == ("30", "40")
    assert "age" not in data.outcomes and "length" not in data.outcomes
    changing = write(tmp_path, _long(age=[30, 31, 40, 40] * 2), "changing.csv")
    lines = check_trial_file(changing, declared=declared(covariate=("age",))).problem_lines()
    assert any("participant 1 changes age between visits" in x for x in lines), lines


# ---- validate ------------------------------------------------------------------------------


def test_validate_describes_before_problems_and_never_cites_design_md(tmp_path):
    path = write(tmp_path, _long(arm=["A"] * 4 + ["B"] * 4))
    result = validate(path)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    first_error = next(i for i, x in enumerate(lines) if x.startswith("error:"))
    assert any("outcome bdi" in x for x in lines[:first_error])
    assert "--reference LABEL" in lines[first_error]
    assert "DESIGN.md" not in result.output
    help_text = validate("--help").output
    assert "DESIGN.md" not in help_text and "--covariate" in help_text


# ---- the real data sets (tests/data/real) --------------------------------------------------


def test_real_btheb():
    data = read_trial_data(
        REAL / "btheb.csv", declared=declared(covariate=("drug", "length"), better=("lower",))
    )
    st = data.structure
    assert st.arms == ("TAU", "BtheB") and st.label == "individual"
    assert st.visit_months == (0.0, 2.0, 3.0, 5.0, 8.0) and st.baseline
    assert st.outcomes["bdi"].better == "lower"
    assert st.covariates["drug"].levels == ("No", "Yes")
    assert st.covariates["length"].levels == ("<6m", ">6m")
    assert data.n_participants == 100
    missing = (~np.isfinite(data.outcomes["bdi"][0])).sum(axis=0)
    np.testing.assert_array_equal(missing, [0, 3, 27, 42, 48])


def test_real_btheb_baseline_as_covariate():
    data = read_trial_data(REAL / "btheb.csv", declared=declared(covariate=("bdi.pre",)))
    assert data.structure.visit_months == (2.0, 3.0, 5.0, 8.0)
    assert not data.structure.baseline
    assert data.covariates["bdi.pre"][0, :3].tolist() == [29, 32, 25]


def test_real_anorexia():
    data = read_trial_data(REAL / "anorexia.csv", declared=declared(reference="Cont"))
    st = data.structure
    assert st.arms == ("Cont", "CBT", "FT")
    assert st.visit_months == (0.0, 1.0) and st.baseline
    assert list(data.outcomes) == ["weight"]
    assert [int((data.arm[0] == i).sum()) for i in range(3)] == [26, 29, 17]


def test_real_star():
    table = check_trial_file(
        REAL / "star.csv", declared=declared(reference="reg", covariate=("sx",))
    )
    assert table.ok, table.problem_lines()
    st, data = table.structure, table.data
    assert st.arms == ("reg", "reg+A", "small")
    assert (st.site, st.stratified, st.cluster, st.label) == ("school", True, "class", "class")
    assert not st.baseline and data.n_visits == 1
    assert set(data.outcomes) == {"math", "read"}
    assert st.covariates["sx"].levels == ("F", "M")
    assert len(data.site_names) == 24 and len(np.unique(data.cluster)) == 104
    assert "ignored columns: eth (text)" in " ".join(table.describe())
