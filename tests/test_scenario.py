"""Scenario loading: validation errors are one line naming file, key, value and range."""

import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.scenario import ScenarioError, apply_overrides, load_scenario

from .conftest import SFT


def test_sft_scenario_matches_the_seed_facts(sft):
    assert sft.sites.n_municipalities == 9
    assert sft.n_participants == 340
    assert sft.design.randomisation == "individual"
    assert sft.dropout.completion_target == pytest.approx(167 / 340, abs=0.005)
    assert set(sft.outcomes) == {"psp", "mhrm", "who5", "eq5d", "support_hours", "employed"}


def test_override_changes_one_value_and_keeps_the_rest(sft):
    s = load_scenario(SFT, ["groups.icc_group=0.1", "design.randomisation='cohort'"])
    assert s.groups.icc_group == 0.1 and s.design.randomisation == "cohort"
    assert s.outcomes == sft.outcomes


def test_override_parses_toml_values():
    raw = apply_overrides({"a": {"b": 1}}, ["a.b=[1, 2]", "a.c=true", "a.d=text"])
    assert raw == {"a": {"b": [1, 2], "c": True, "d": "text"}}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("groups.icc_grup=0.1", "groups.icc_grup: unknown key"),
        ("groups.icc_group=1.5", "groups.icc_group: Input should be less than 1"),
        ("groups.icc_group='high'", "groups.icc_group: Input should be a valid number"),
        ("groups.min_size=11", "groups.min_size (11) must not exceed groups.max_size (10)"),
        ("design.randomisation='cluster'", "design.randomisation: Input should be"),
        ("outcomes.psp.sd=-1", "outcomes.psp.sd: Input should be greater than 0"),
        ("outcomes.psp.effect_by_visit=[0, 1]", "outcomes.psp.effect_by_visit needs 3 shares"),
        ("correlation.between_followups=-0.9", "correlation.between_followups"),
        ("design.visit_months=[3, 9]", "design.visit_months must start with 0"),
        ("sites.participants=[10, 10]", "sites.names has 9 names for 2 municipalities"),
    ],
)
def test_invalid_values_name_the_key(override, expected):
    with pytest.raises(ScenarioError) as info:
        load_scenario(SFT, [override])
    message = str(info.value)
    assert expected in message and "sft-19m.toml" in message and "\n" not in message


def test_cluster_design_needs_two_clusters_per_arm():
    overrides = [
        "design.randomisation='municipality'",
        "sites.participants=[40, 40, 40]",
        "sites.names=['a', 'b', 'c']",
    ]
    with pytest.raises(ScenarioError, match="at least 2 clusters per arm"):
        load_scenario(SFT, overrides)


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "scenarios/nope.toml"],
        ["validate", str(SFT), "--set", "groups.icc_group=2"],
        ["validate", str(SFT), "--set", "noequals"],
        ["simulate", str(SFT), "--out", "x.csv", "--set", "dropout.mechanism='MNARR'"],
        ["simulate", str(SFT), "--out", "x.xlsx"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("x.*"))  # nothing written


def test_malformed_toml_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[design\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_validate_prints_a_summary():
    result = CliRunner().invoke(main, ["validate", str(SFT)])
    assert result.exit_code == 0
    assert "9 municipalities, 340 participants" in result.output
    assert "up to 27 groups" in result.output
