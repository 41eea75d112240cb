"""One default rule for every planning command, and the defects it replaced.

Every command (power, compare, sweep, budget, assurance, calibrate) asks
:func:`trialsim.analyse.registry.default_analysis` on the trial's structure and prints
``choice.line()``; counts get the Poisson GLM by default, and a Gaussian analysis of a count
is scored on its own scale (the ITT difference in means). Oracles: the rule itself (asked
directly on the same structure), the simulator's raw arm means (for the mean-scale truth), and
the Monte Carlo SE (for bias).
"""

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, SFT, scenario
from trialsim.analyse.registry import default_analysis
from trialsim.cli import main
from trialsim.scenario import load_scenario
from trialsim.structure import TrialStructure

BLINDED = ROOT / "scenarios" / "sft-19m-blinded.toml"
UNBIASED = ("blinding.assessor_unblinded_prob=0", "dropout.mechanism='MCAR'")


# ---- compare and sweep: the rule, not a design name ------------------------------------------


def test_compare_uses_the_rule_per_design_and_prints_its_line():
    from trialsim.design.compare import compare_designs, format_comparison

    s = scenario(outcomes=("psp", "support_hours"))
    c = compare_designs(
        s,
        ["individual", "municipality"],
        reps=8,
        seed=1,
        outcome="support_hours",
        recruitment=False,
    )
    for row in c.rows:
        assert row["analysis"] == "poisson", row  # counts: the Poisson GLM, whatever the design
        variant = s.model_copy(
            update={"design": s.design.model_copy(update={"randomisation": row["design"]})}
        )
        choice = default_analysis(variant.structure, "support_hours")
        assert row["analysis_reason"] == choice.reason
        assert f"{row['design']}: {choice.line()}" in format_comparison(c)
    # a continuous outcome: each design's own default (mixed / mixed-cluster)
    psp = compare_designs(s, ["individual", "municipality"], reps=4, seed=1, recruitment=False)
    assert [r["analysis"] for r in psp.rows] == ["mixed", "mixed-cluster"]


def test_sweep_cells_use_the_rule_and_the_table_says_why(tmp_path):
    from trialsim.design.grid import parse_vary
    from trialsim.design.sweep import format_sweep, run_sweep

    result = run_sweep(
        SFT,
        [parse_vary("design.randomisation=individual,municipality")],
        reps=8,
        out=tmp_path,
        seed=3,
        outcome="psp",
        plots=False,
    )
    table = result.table
    assert result.cells_failed == 0, table["error"].tolist()
    assert table["analysis"].tolist() == ["mixed", "mixed-cluster"]
    s = load_scenario(SFT, ["design.randomisation='municipality'"])
    choice = default_analysis(s.structure, "psp")
    assert table["analysis_reason"].iloc[1] == choice.reason
    assert f"{choice.line()} [1 cells]" in format_sweep(table, ["design.randomisation"])

    counts = run_sweep(
        SFT,
        [parse_vary("groups.icc_group=0.05")],
        reps=8,
        out=tmp_path / "counts",
        seed=3,
        outcome="support_hours",
        plots=False,
    )
    assert counts.table["analysis"].tolist() == ["poisson"]


def test_sweep_follows_base_of_a_variant_scenario(tmp_path):
    from trialsim.design.grid import parse_vary
    from trialsim.design.sweep import run_sweep

    result = run_sweep(
        BLINDED, [parse_vary("groups.icc_group=0.02,0.1")], reps=8, out=tmp_path, plots=False
    )
    assert result.cells_failed == 0, result.table["error"].tolist()
    assert result.table["error"].isna().all()
    assert result.table["analysis"].tolist() == ["mixed", "mixed"]
    settings = json.loads((tmp_path / "sweep.json").read_text())["settings"]
    assert settings["scenario"] == "sft-19m-blinded"
    assert settings["scenario_sha256"] == load_scenario(BLINDED).digest()


def test_no_planning_module_chooses_an_analysis_by_design_name():
    """The default comes from the structure: no module compares the randomisation name with
    a list of designs to pick an analysis or model any more."""
    files = [
        "trialsim/design/compare.py",
        "trialsim/design/sweep.py",
        "trialsim/design/budget.py",
        "trialsim/cli/power.py",
        "trialsim/cli/assurance.py",
        "trialsim/power/simulation.py",
        "trialsim/calibrate/estimate.py",
    ]
    for name in files:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert "randomisation in (" not in text, name
        assert "randomisation ==" not in text, name
        assert "default_analysis(design" not in text, name


# ---- power -------------------------------------------------------------------------------------


def test_cli_power_prints_the_rule_and_puts_it_in_the_json():
    s = load_scenario(SFT)
    choice = default_analysis(s.structure, "support_hours")
    args = ["power", str(SFT), "--method", "simulation", "--reps", "8", "--outcome"]
    text = CliRunner().invoke(main, [*args, "support_hours"])
    assert text.exit_code == 0, text.output
    assert choice.line() in text.output and choice.name == "poisson"
    out = json.loads(CliRunner().invoke(main, [*args, "support_hours", "--format", "json"]).output)
    assert out["choices"][0]["name"] == "poisson"
    assert out["choices"][0]["reason"] == choice.reason
    assert out["analyses"][0]["name"] == "poisson"
    assert out["analyses"][0]["reason"] == choice.reason
    asked = CliRunner().invoke(main, [*args, "support_hours", "--analysis", "mixed"])
    assert "chosen with --analysis; the default is poisson" in asked.output
    assert "ITT difference in means on the count scale" in asked.output


# ---- a Gaussian analysis of a count is scored on its own scale --------------------------------


@pytest.mark.parametrize("outcome", ["support_hours", "employed"])
@pytest.mark.parametrize("selection", [False, True])
def test_mean_scale_truth_equals_the_simulated_arm_difference(outcome, selection):
    """Oracle: the simulator's own final-visit arm means over 4096 complete trials (no
    analysis, no dropout) agree with the analytic mean-scale truth within 4 SE, with and
    without self-selected attendance correlated with the outcome."""
    from trialsim.power.simulation import true_effect
    from trialsim.simulate import simulate_trials

    extra = ("attendance.prognosis_log_odds=2", "correlation.between_outcomes=0.6")
    s = scenario("dropout.completion_target=1", *(extra if selection else ()),
                 outcomes=("psp", outcome))  # fmt: skip
    truth = true_effect(s, outcome, "itt", mean_scale=True)
    d = simulate_trials(s, range(4096), seed=9)
    y, treated = d.outcomes[outcome][:, :, -1], d.treated
    diff = np.array([y[r][treated[r]].mean() - y[r][~treated[r]].mean() for r in range(len(y))])
    assert abs(diff.mean() - truth) < 4 * diff.std(ddof=1) / np.sqrt(len(diff))
    # and it is not the log rate / odds ratio the GLMs target
    assert truth != pytest.approx(true_effect(s, outcome, "itt"), rel=0.1, nan_ok=False)


def test_mixed_on_counts_is_unbiased_for_the_mean_difference():
    """Measured on the old code: bias -0.77 (scored against the log rate ratio)."""
    from trialsim.power.simulation import simulate_operating_characteristics

    s = scenario(*UNBIASED, outcomes=("support_hours",))
    (oc,), _ = simulate_operating_characteristics(s, ["mixed"], reps=2000, seed=3)
    assert oc.failures == 0
    assert oc.truth < -0.3  # hours per month, not a log ratio
    assert abs(oc.bias) < 3 * oc.bias_mcse, oc
    assert abs(oc.coverage - 0.95) < 3 * np.sqrt(0.05 * 0.95 / 2000), oc


# ---- budget follows the structure --------------------------------------------------------------


def test_budget_refuses_a_design_it_cannot_optimise_naming_it():
    from trialsim.design.budget import Costs, optimise_budget

    s = scenario("design.randomisation='municipality'")
    with pytest.raises(ValueError, match="municipality design"):
        optimise_budget(s, 2e6, Costs(30000, 2500))


def test_budget_uses_the_scenarios_own_formula():
    """Cohort randomisation: the power function is the scenario's own formula (at the
    scenario's counts it equals the analytic power of the cohort design)."""
    from trialsim.design.budget import irgt_power_function
    from trialsim.power.from_scenario import analytic_parameters, analytic_power

    for design in ("individual", "cohort"):
        s = scenario(f"design.randomisation='{design}'", "outcomes.psp.effect=6")
        formula, p = analytic_parameters(s)
        assert formula == "irgt"
        power = irgt_power_function(s)(p["n_groups"], p["group_size"], p["n_control"])
        assert power == pytest.approx(analytic_power(s)["power"], rel=1e-12)


def test_cli_budget_prints_the_rule(tmp_path):
    args = ["budget", str(SFT), "--budget", "2000000", "--cost-group", "30000"]
    args += ["--cost-participant", "2500", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    choice = default_analysis(load_scenario(SFT).structure, "psp")
    assert choice.line() in result.output
    summary = json.loads((tmp_path / "budget.json").read_text())
    assert summary["analysis"] == {"name": choice.name, "reason": choice.reason}
    bad = CliRunner().invoke(main, [*args[:1], str(ROOT / "scenarios/sft-19m-municipality.toml"),
                                    *args[2:], "--force"])  # fmt: skip
    assert bad.exit_code == 2 and "municipality design" in bad.output


# ---- assurance: direction of benefit from the structure --------------------------------------


def test_assurance_settings_come_from_the_structure(monkeypatch):
    from trialsim.bayes.assurance import assurance_settings
    from trialsim.scenario import Scenario

    s = scenario()
    settings, choice = assurance_settings(s, "psp")
    assert settings.better == s.structure.outcomes["psp"].better
    assert choice == default_analysis(s.structure, "psp")
    assert settings.model == "partially-nested"
    cluster = scenario("design.randomisation='municipality'")
    assert assurance_settings(cluster, "psp")[0].model == "cluster"

    undeclared = s.structure.with_outcome(replace(s.structure.outcomes["psp"], better=None))
    monkeypatch.setattr(Scenario, "structure", property(lambda self: undeclared))
    with pytest.raises(ValueError, match="--better"):
        assurance_settings(s, "psp")
    assert assurance_settings(s, "psp", better="lower")[0].better == "lower"


def test_cli_assurance_prints_the_rule():
    args = ["assurance", str(SFT), "--design-prior", "effect=normal:7,3", "--reps", "8"]
    result = CliRunner().invoke(main, [*args, "--per-draw", "4"])
    assert result.exit_code == 0, result.output
    assert default_analysis(load_scenario(SFT).structure, "psp").line() in result.output


# ---- calibrate: randomisation from the structure ------------------------------------------


@pytest.mark.parametrize(
    "kw,expected",
    [
        ({}, "individual"),
        ({"cluster": "municipality", "stratified": False}, "municipality"),
        ({"cluster": "municipality", "stratified": False, "n_periods": 4}, "stepped-wedge"),
        ({"cluster": "cohort", "groups_are_clusters": True}, "cohort"),
        ({"cluster": "class", "site": "school"}, "cohort"),
    ],
)
def test_calibrate_maps_the_structure_to_a_randomisation(kw, expected):
    from trialsim.calibrate.estimate import randomisation_of

    assert randomisation_of(TrialStructure(**kw)) == expected


@pytest.mark.parametrize("design", ["municipality", "cohort"])
def test_calibrate_runs_on_the_new_trial_data(design):
    from trialsim.calibrate import calibrate_trial
    from trialsim.simulate import simulate_trials

    s = scenario(f"design.randomisation='{design}'", outcomes=("psp", "support_hours"))
    data = simulate_trials(s, [0], seed=2)
    cal = calibrate_trial(data, template=s, name="x")
    assert cal.raw["design"]["randomisation"] == design
    assert cal.raw["sites"]["names"] == list(data.site_names)
    assert cal.analysis == default_analysis(data.structure, "psp")
    assert cal.summary()["analysis"]["name"] == cal.analysis.name
    assert "poisson" in cal.notes["outcomes.support_hours.rate_ratio"]
    assert cal.scenario().design.randomisation == design
