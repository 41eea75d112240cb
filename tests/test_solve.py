"""Solving a scenario's analytic power for one input: what is held fixed, totals per arm,
warnings; and the honest headlines (biased analyses, observed power).

Oracles: a brute-force integer search over the closed-form power function (the smallest count
whose power reaches the target, the controls scaled by hand), and the power function itself
at the solved value (round trip).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.power.analytic import power_irgt
from trialsim.power.from_scenario import analytic_parameters, analytic_power, analytic_solve
from trialsim.power.headlines import (
    bias_sources,
    flagged,
    observed_power_note,
    unbiased_scenario,
)
from trialsim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SFT = SCENARIOS / "sft-19m.toml"


def _brute_force(power_of, start: int, target: float) -> int:
    n = start
    while power_of(n) < target:
        n += 1
    return n


@pytest.mark.parametrize("target", [0.8, 0.9])
def test_solving_groups_keeps_the_allocation_ratio(target):
    s = load_scenario(SFT, [])
    _, p = analytic_parameters(s)
    ratio = p["n_control"] / (p["n_groups"] * p["group_size"])
    expected = _brute_force(
        lambda g: power_irgt(**dict(p, n_groups=g, n_control=ratio * g * p["group_size"])),
        2,
        target,
    )
    out = analytic_solve(s, "n_groups", target)
    assert out["value"] == expected
    treated, control = out["arms"]["treated"], out["arms"]["control"]
    assert control["participants"] == pytest.approx(ratio * treated["participants"])
    assert "allocation ratio" in out["held"] and "in all" in out["held"]
    # SFT (1:1) with completers thinned per group and the small-sample REML model (the
    # textbook formula said 37 and 49; without the small-sample model 42 and 55)
    assert out["value"] == {0.8: 42, 0.9: 56}[target]


def test_hold_n_control_keeps_the_old_answer():
    s = load_scenario(SFT, [])
    _, p = analytic_parameters(s)
    expected = _brute_force(lambda g: power_irgt(**dict(p, n_groups=g)), 2, 0.8)
    out = analytic_solve(s, "n_groups", 0.8, hold="n_control")
    assert out["value"] == expected == 67  # 66 without the small-sample REML model
    assert out["arms"]["control"]["participants"] == p["n_control"]
    assert "controls held fixed" in out["held"]


def test_participants_in_all_and_groups_agree_on_one_scaling():
    s = load_scenario(SFT, [])
    by_groups = analytic_solve(s, "n_groups", 0.8)
    by_people = analytic_solve(s, "n_participants", 0.8)
    total = sum(a["participants"] for a in by_groups["arms"].values())
    # whole groups overshoot a little; the participant answer is the finer one
    assert by_people["value"] <= total
    assert by_people["power"] >= 0.8
    assert analytic_solve(s, "n_participants", 0.8)["arms"]["treated"]["groups"] <= 42


@pytest.mark.parametrize("unknown", ["icc", "alpha", "sd", "dropout", "effect"])
def test_continuous_unknowns_round_trip_through_the_scenario_formula(unknown):
    s = load_scenario(SFT, ["groups.icc_group=0.02"])
    target = 0.6
    out = analytic_solve(s, unknown, target)
    _, p = analytic_parameters(s)
    p[unknown] = out["value"]
    assert power_irgt(**p) == pytest.approx(target, abs=1e-7)


def test_more_clusters_than_municipalities_is_a_warning():
    s = load_scenario(SCENARIOS / "sft-19m-municipality.toml", [])
    out = analytic_solve(s, "n_clusters", 0.8)
    assert any("9 municipalities" in w for w in out["warnings"])
    assert "treated +" in out["held"] and "control clusters" in out["held"]


def test_group_size_beyond_the_largest_group_is_a_warning():
    s = load_scenario(SFT, [])
    out = analytic_solve(s, "group_size", 0.8, hold="n_control")
    assert out["value"] > s.groups.max_size
    assert any("groups.max_size" in w for w in out["warnings"])


def test_target_met_at_the_smallest_count_is_an_edge_warning():
    s = load_scenario(SFT, ["outcomes.psp.effect=60"])
    out = analytic_solve(s, "group_size", 0.8, hold="n_control")
    assert out["value"] == 1
    assert any("lower edge" in w for w in out["warnings"])
    assert any("groups.min_size" in w for w in out["warnings"])


def test_analytic_power_reports_residual_labels_and_every_contrast():
    s = load_scenario(SFT, [])
    a = analytic_power(s)
    assert "residual SD/ICC after baseline adjustment" in a["residual_note"]
    three = load_scenario(SCENARIOS / "three-arm.toml", [])
    arms = three.arm_labels[1:]
    powers = [analytic_power(three, arm=arm)["power"] for arm in arms]
    assert len(set(powers)) == len(arms)


def test_bias_sources_and_their_switch_off():
    s = load_scenario(SFT, [])
    sources = bias_sources(s, "psp")
    assert any("unblinded assessors" in x for x in sources)
    assert any("MAR" in x for x in sources)
    fair = unbiased_scenario(s)
    assert bias_sources(fair, "psp") == [] and bias_sources(fair, "mhrm") == []
    assert bias_sources(s, "mhrm")[0].startswith("expectancy bias")
    assert fair.dropout.completion_target == s.dropout.completion_target


def test_flag_at_three_mcse():
    assert flagged(0.092, 0.009, 0.05)  # the SFT headline: 4.7 MCSE above alpha
    assert not flagged(0.07, 0.009, 0.05)
    assert not flagged(float("nan"), 0.01, 0.05)


def test_observed_power_note_reads_the_calibrate_marker():
    s = load_scenario(SFT, [])
    assert observed_power_note(s) is None
    calibrated = s.model_copy(
        update={"description": "calibrated from data (167 participants); template sft-19m"}
    )
    assert "observed power" in observed_power_note(calibrated)


def test_cli_solve_prints_what_was_held_and_refuses_a_bad_hold():
    runner = CliRunner()
    out = runner.invoke(main, ["power", str(SFT), "--method", "analytic", "--solve", "n_groups"])
    assert out.exit_code == 0, out.output
    assert "held: allocation ratio" in out.output and "529 in all" in out.output
    assert "residual SD/ICC after baseline adjustment" in out.output
    bad = runner.invoke(
        main,
        ["power", str(SFT), "--method", "analytic", "--solve", "effect", "--hold", "n_control"],
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_cli_flags_a_biased_analysis_with_power_at_the_true_effect():
    out = CliRunner().invoke(
        main,
        [
            "power",
            str(SFT),
            "--method",
            "simulation",
            "--reps",
            "100",
            "--seed",
            "4",
            "--set",
            "blinding.assessor_bias=8",
            "--set",
            "blinding.assessor_unblinded_prob=1",
            "--format",
            "json",
        ],
    )
    assert out.exit_code == 0, out.output
    import json

    result = json.loads(out.output[out.output.index("{") :])
    (h,) = result["headlines"]
    assert h["type1"] > 0.05 + 3 * h["type1_mcse"]
    assert h["power_true_effect"] < h["power"]
    assert any("unblinded assessors" in x for x in h["sources"])
