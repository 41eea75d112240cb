"""Solving for the sample size of a trial with three or more arms (power.solve_arms).

Oracles: the round trip (the decision's power at the answer reaches the target, one below it
does not), and for the default decision (every contrast, unadjusted) the two-arm solve of the
weakest contrast (trialsim.power.from_scenario.analytic_solve, its own scaling code) scaled
from that contrast's two arms to all three.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.power.analytic_arms import decision_power, from_irgt_parameters, scenario_parameters
from trialsim.power.from_scenario import analytic_solve
from trialsim.power.solve_arms import _scaled, solve_arms
from trialsim.scenario import load_scenario

THREE_ARM = Path(__file__).parent.parent / "scenarios" / "three-arm.toml"


@pytest.fixture(scope="module")
def three_arm():
    return load_scenario(THREE_ARM)


@pytest.mark.parametrize(
    ("unknown", "decision", "adjustment"),
    [
        ("n_participants", "each", "none"),
        ("n_participants", "any", "dunnett"),
        ("n_participants", "all", "bonferroni"),
        ("n_groups", "each", "dunnett"),
    ],
)
def test_round_trip(three_arm, unknown, decision, adjustment):
    s = three_arm
    sol = solve_arms(s, unknown, 0.8, "psp", decision=decision, adjustment=adjustment)
    params = scenario_parameters(s, "psp")
    base = {
        "n_participants": params[0]["n_control"]
        + sum(p["n_groups"] * p["group_size"] for p in params),
        "n_groups": sum(p["n_groups"] for p in params),
    }[unknown]

    def power(value):
        c = from_irgt_parameters(s.arm_labels[1:], _scaled(params, value / base), 0.05)
        return decision_power(c, decision, adjustment)

    n = sol["value"]
    assert power(n) >= 0.8 > power(n - 1)
    assert sol["power"] == pytest.approx(power(n))
    # the allocation is held: each arm's share of the participants is the scenario's
    total = sum(a["participants"] for a in sol["arms"].values())
    for arm, share in zip(s.arm_labels, s.arm_allocation, strict=True):
        assert sol["arms"][arm]["participants"] / total == pytest.approx(share, abs=0.01)


def test_each_contrast_equals_the_weakest_two_arm_solve(three_arm):
    s = three_arm
    sol = solve_arms(s, "n_participants", 0.8, "psp")
    # sft is the weaker arm (effect 7 vs 9.5); its two-arm solve holds its 1:1 allocation,
    # i.e. two thirds of the three-arm trial
    two = analytic_solve(s, "n_participants", 0.8, "psp", arm="sft")
    assert sol["value"] == pytest.approx(two["value"] * 3 / 2, abs=2)
    # "any" needs fewer, "all" more, and adjustment costs participants
    n = {
        (d, a): solve_arms(s, "n_participants", 0.8, "psp", decision=d, adjustment=a)["value"]
        for d, a in [("any", "none"), ("all", "none"), ("each", "bonferroni")]
    }
    assert n[("any", "none")] < sol["value"] < n[("all", "none")]
    assert n[("each", "bonferroni")] > sol["value"]


def test_cli_prints_what_was_held_and_rejects_bad_combinations(tmp_path):
    runner = CliRunner()
    args = ["power", str(THREE_ARM), "--method", "analytic", "--solve", "n_participants"]
    res = runner.invoke(main, [*args, "--decision", "any", "--adjustment", "dunnett"])
    assert res.exit_code == 0, res.output
    assert "for at least one arm significant, Dunnett" in res.output
    assert "held: allocation (0.33/0.33/0.33) and group sizes held: control" in res.output
    bad = runner.invoke(
        main, ["power", str(THREE_ARM), "--method", "analytic", "--adjustment", "dunnett"]
    )
    assert bad.exit_code == 2 and "--adjustment applies to 3+ arms" in bad.output
    bad = runner.invoke(main, [*args, "--hold", "n_control"])
    assert bad.exit_code == 2 and "allocation is held" in bad.output
