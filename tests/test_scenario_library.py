"""Every scenario in scenarios/ validates; the SFT variants ask their question in a header
and differ from the base scenario where their name says."""

from pathlib import Path

import pytest

from trialsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
VARIANTS = sorted((ROOT / "scenarios").glob("sft-19m-*.toml"))
DESIGN_VARIANTS = ("cohort", "municipality", "stepped-wedge", "waitlist")


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_validates(path):
    s = load_scenario(path)
    assert s.name == path.stem, "a scenario's name should match its file name"


def test_the_library_covers_every_design_and_the_two_questions():
    names = {p.stem.removeprefix("sft-19m-") for p in VARIANTS}
    assert {*DESIGN_VARIANTS, "blinded", "low-attendance"} <= names


@pytest.mark.parametrize("path", VARIANTS, ids=lambda p: p.name)
def test_variant_header_and_difference(path):
    assert path.read_text(encoding="utf-8").startswith("# Question: ")
    base = load_scenario(ROOT / "scenarios" / "sft-19m.toml")
    s = load_scenario(path)
    which = path.stem.removeprefix("sft-19m-")
    if which in DESIGN_VARIANTS:
        assert s.design.randomisation == which
    elif which == "blinded":
        assert s.blinding.assessor_unblinded_prob == 0 < base.blinding.assessor_unblinded_prob
    elif which == "low-attendance":
        assert s.attendance.mean_fraction < base.attendance.mean_fraction
    # nature is otherwise the same as the base scenario
    assert s.outcomes == base.outcomes and s.sites.participants == base.sites.participants


def test_base_merges_tables_key_by_key(tmp_path):
    base = ROOT / "scenarios" / "sft-19m.toml"
    variant = tmp_path / "v.toml"
    variant.write_text(
        f'base = "{base}"\nname = "v"\n[groups]\nicc_group = 0.2\n', encoding="utf-8"
    )
    expected = load_scenario(base, ["name='v'", "groups.icc_group=0.2"])
    assert load_scenario(variant) == expected


def test_a_base_cycle_is_one_clear_error(tmp_path):
    from trialsim.scenario import ScenarioError

    (tmp_path / "a.toml").write_text('base = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('base = "a.toml"\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match="refers back to itself"):
        load_scenario(tmp_path / "a.toml")
