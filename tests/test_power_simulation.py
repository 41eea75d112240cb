"""Simulated operating characteristics: calibration, agreement with analytic power, MCSEs."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from statsmodels.stats.multitest import multipletests

from trialsim.analyse.cluster_level import cluster_level_ttest
from trialsim.cli import main
from trialsim.power.from_scenario import analytic_power
from trialsim.power.simulation import holm_decisions, simulate_operating_characteristics
from trialsim.simulate import simulate_trials

from .conftest import CLEAN, SFT, scenario

# the SFT scenario without the bias sources it builds in on purpose (unblinded assessors,
# dropout that depends on attendance): the mixed model must then be calibrated
SFT_UNBIASED = ("blinding.assessor_unblinded_prob=0", "dropout.mechanism='MCAR'")


def test_default_analysis_is_calibrated_on_sft_at_4000_reps():
    s = scenario(*SFT_UNBIASED)
    (oc,), _ = simulate_operating_characteristics(s, ["mixed"], reps=4000, seed=101)
    assert oc.failures == 0 and oc.null_failures == 0
    assert abs(oc.type1 - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 4000), oc
    assert abs(oc.coverage - 0.95) < 3 * np.sqrt(0.05 * 0.95 / 4000), oc
    assert abs(oc.bias) < 3 * oc.bias_mcse + 0.05  # rounding PSP to integers: < 0.05 points
    # model SE matches the empirical SE within 3 MCSEs of the latter
    assert abs(oc.mean_se - oc.empirical_se) < 3 * oc.empirical_se_mcse


def test_threads_do_not_change_the_operating_characteristics():
    """Chunks run on several threads; the summaries and p-values do not depend on how many."""
    s = scenario()
    runs = [
        simulate_operating_characteristics(
            s, ["mixed", "ancova"], reps=600, seed=5, chunk_size=256, threads=threads
        )
        for threads in (1, 2)
    ]
    (oc1, p1), (oc2, p2) = runs
    assert oc1 == oc2
    for name in ("mixed", "ancova"):
        np.testing.assert_array_equal(p1[name], p2[name])


def test_unblinded_assessor_bias_shows_as_bias():
    s = scenario(*CLEAN, "blinding.assessor_unblinded_prob=1", "blinding.assessor_bias=3")
    (oc,), _ = simulate_operating_characteristics(s, ["mixed"], reps=1000, seed=5)
    assert abs(oc.bias - 3.0) < 3 * oc.bias_mcse
    assert oc.type1 > 0.3  # a biased assessor 'finds' an effect that is not there


def test_analytic_irgt_power_agrees_with_simulation():
    # MCAR dropout, no trainer level and a constant effect (a dose-dependent effect adds
    # variance the formula does not know): the formula's assumptions hold up to its
    # Satterthwaite approximation; 4000 replicates give an MCSE of about 0.006
    s = scenario(
        *CLEAN,
        "dropout.mechanism='MCAR'",
        "dropout.completion_target=0.8",
        "groups.icc_group=0.08",
        "attendance.dose_response='none'",
        "outcomes.psp.effect=4.5",
    )
    analytic = analytic_power(s)["power"]
    (oc,), _ = simulate_operating_characteristics(s, ["mixed"], reps=4000, seed=7)
    assert abs(oc.power - analytic) < 2 * oc.power_mcse, (oc.power, analytic)


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(1)
    # statsmodels' multipletests costs 0.1-0.6 s per call here: a dozen rows of four p-values
    # around the thresholds, plus ties and the all/none cases
    p = np.vstack([rng.uniform(0, 0.1, size=(10, 4)), [0.0125] * 4, [0.2, 0.01, 0.3, 0.04]])
    ours = holm_decisions(p, 0.05)
    theirs = np.array([multipletests(row, alpha=0.05, method="holm")[0] for row in p])
    np.testing.assert_array_equal(ours["holm"], theirs)
    np.testing.assert_array_equal(ours["any"], theirs.any(axis=1))
    np.testing.assert_array_equal(ours["all"], (p < 0.05).all(axis=1))


def test_cluster_level_equals_a_plain_two_stage_t_test():
    s = scenario("design.randomisation='municipality'", "groups.icc_municipality=0.05")
    d = simulate_trials(s, 20, seed=3)
    est = cluster_level_ttest(d, "psp")
    for r in range(d.n_reps):
        y, y0 = d.outcomes["psp"][r, :, -1], d.outcomes["psp"][r, :, 0]
        ok = np.isfinite(y)
        X = np.column_stack([np.ones(ok.sum()), y0[ok] - np.nanmean(y0)])
        resid = y[ok] - X @ np.linalg.lstsq(X, y[ok], rcond=None)[0]
        site = d.site[r]
        means = np.array([resid[site[ok] == m].mean() for m in range(9)])
        arm = np.array([d.treated[r][site == m][0] for m in range(9)])
        t = stats.ttest_ind(means[arm], means[~arm])
        assert est.p_value[r] == pytest.approx(t.pvalue, rel=1e-9)
        assert est.df[r] == 7


def test_cli_power_json_has_the_documented_keys():
    result = CliRunner().invoke(
        main, ["power", str(SFT), "--reps", "200", "--format", "json", "--analysis", "mixed"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    formula, simulated = out["analyses"]  # --method both: the formula and the simulation
    for key in ("name", "power", "power_mcse", "type1", "bias", "coverage", "failures"):
        assert key in simulated
    assert simulated["name"] == "mixed" and simulated["method"] == "simulation"
    assert formula["name"] == "analytic-irgt" and formula["method"] == "analytic"
    assert formula["power"] == out["analytic"]["power"] and 0 < formula["power"] < 1
    assert out["scenario_sha256"] and out["seed"] == 20161 and "numpy" in out["versions"]


def test_cli_power_solve_and_plot(tmp_path):
    plot = tmp_path / "running.png"
    result = CliRunner().invoke(
        main, ["power", str(SFT), "--reps", "100", "--solve", "n_groups", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    assert "solve: n_groups" in result.output and plot.stat().st_size > 1000


def test_cli_analyse_one_row_per_replicate(tmp_path):
    data = tmp_path / "sim.csv"
    CliRunner().invoke(main, ["simulate", str(SFT), "--reps", "3", "--out", str(data)])
    result = CliRunner().invoke(main, ["analyse", str(data), "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()  # the structure and the analysis go to stderr
    assert lines[0].startswith("rep,contrast,analysis,estimate,se,df,p_value,ci_low,ci_high")
    assert len(lines) == 4
    assert "analysis: mixed (default: bounded outcome" in result.stderr
    bad = CliRunner().invoke(main, ["analyse", str(data), "--outcome", "nope"])
    assert bad.exit_code == 2 and bad.output.startswith("error: ")


def test_naive_ancova_is_inflated_when_the_group_icc_is_large():
    s = scenario(*CLEAN, "groups.icc_group=0.25")
    ocs, _ = simulate_operating_characteristics(s, ["ancova", "mixed"], reps=2000, seed=9)
    ancova, mixed = ocs
    mcse = np.sqrt(0.05 * 0.95 / 2000)
    assert ancova.type1 > 0.05 + 5 * mcse, ancova  # the literature's warning, reproduced
    assert abs(mixed.type1 - 0.05) < 3 * mcse, mixed


@pytest.mark.parametrize("design", ["municipality", "stepped-wedge", "cohort"])
def test_cluster_designs_analysed_by_mixed_cluster_keep_type1(design):
    s = scenario(*CLEAN, f"design.randomisation='{design}'", "groups.icc_municipality=0.05")
    (oc,), _ = simulate_operating_characteristics(s, ["mixed-cluster"], reps=1000, seed=4)
    mcse = np.sqrt(0.05 * 0.95 / 1000)
    assert oc.failures == 0
    assert oc.type1 < 0.05 + 3 * mcse + 0.02, oc  # few clusters: Satterthwaite is approximate
    assert abs(oc.bias) < 3 * oc.bias_mcse + 0.05, oc


def test_multiple_outcomes_decisions_agree_with_per_outcome_runs():
    # Oracle: the per-outcome results equal a single-outcome run on the same seed for the
    # primary (common random numbers; the outcomes are simulated jointly so only the primary,
    # which drives attendance and dropout, is identical), and the 'all'/'any' powers are
    # bounded by the per-outcome powers as the decision rules imply.
    from trialsim.power.simulation import simulate_multiple_outcomes

    s = scenario(*SFT_UNBIASED, outcomes=("psp", "mhrm"))
    per, dec = simulate_multiple_outcomes(s, "mixed", ["psp", "mhrm"], reps=300, seed=3)
    assert [oc.outcome for oc in per] == ["psp", "mhrm"]
    psp, mhrm = (oc.power for oc in per)
    assert dec["all"].power <= min(psp, mhrm) + 1e-12
    assert max(psp, mhrm) - 1e-12 <= 1 and dec["any"].power <= 1
    assert dec["any"].power >= dec["all"].power
    assert dec["all"].power_mcse == pytest.approx(
        np.sqrt(dec["all"].power * (1 - dec["all"].power) / 300)
    )
    # under the global null the Holm 'any' decision keeps the family-wise error near alpha
    assert dec["any"].type1 < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)


def test_cli_power_several_outcomes_json():
    args = ["power", str(SFT), "--reps", "100", "--format", "json", "--method", "simulation"]
    args += ["--outcome", "psp", "--outcome", "mhrm", "--outcome", "employed"]
    result = CliRunner().invoke(main, [*args, "--decision", "any"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["outcomes"] == ["psp", "mhrm", "employed"]
    simulated = [a for a in out["analyses"] if a["method"] == "simulation"]
    assert [a["outcome"] for a in simulated] == ["psp", "mhrm", "employed"]
    assert [a["name"] for a in simulated] == ["mixed", "mixed", "logistic"]
    for a in simulated:
        for key in ("name", "power", "power_mcse", "type1", "bias", "coverage", "failures"):
            assert key in a
    assert out["decision"]["rule"] == "any"
    assert set(out["decisions"]) == {"all", "any"}
    for d in out["decisions"].values():
        assert 0 <= d["power"] <= 1 and d["power_mcse"] >= 0 and "type1" in d
    table = CliRunner().invoke(main, [a for a in args if a not in ("--format", "json")])
    assert table.exit_code == 0 and "decision 'all'" in table.output


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--outcome", "psp", "--decision", "all"], "--decision needs at least two"),
        (["--outcome", "psp", "--outcome", "mhrm", "--solve", "effect"], "--solve works"),
        (["--outcome", "psp", "--outcome", "nope"], "--outcome nope"),
        (
            ["--outcome", "psp", "--outcome", "mhrm", "--analysis", "mixed", "--analysis", "cr2"],
            "at most one --analysis",
        ),
    ],
)
def test_cli_power_outcome_option_errors(extra, message):
    result = CliRunner().invoke(main, ["power", str(SFT), "--reps", "10", *extra])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output


def test_kept_replicates_reproduce_every_summary():
    """--keep-replicates: the per-replicate table gives back power, type-I error, bias and
    coverage exactly, so new diagnosands need no new simulation."""
    from .conftest import scenario as sft

    tables: list = []
    (oc,), _ = simulate_operating_characteristics(
        sft(), ["ancova"], reps=40, seed=9, replicates=tables
    )
    (t,) = tables
    eff, nul = t[t.world == "effect"], t[t.world == "null"]
    ok = ~eff.failed
    assert len(eff) == len(nul) == 40
    assert oc.power == ((eff.p_value < 0.05) & ok).mean()
    assert oc.type1 == ((nul.p_value < 0.05) & ~nul.failed).mean()
    assert oc.bias == pytest.approx(eff.estimate[ok].mean() - oc.truth, abs=1e-12)
    covered = ok & (eff.ci_low <= oc.truth) & (oc.truth <= eff.ci_high)
    assert oc.coverage == covered.mean()
    # each replicate's own (sample) estimand: its mean is the truth on this difference
    # scale, and the bias's Monte Carlo SE is that of estimate - estimand
    assert (eff.scale == "mean difference").all() and (nul.estimand == 0).all()
    assert eff.estimand.mean() == pytest.approx(oc.truth, rel=1e-12)
    paired = (eff.estimate - eff.estimand)[ok]
    assert oc.bias_mcse == pytest.approx(paired.std(ddof=1) / np.sqrt(ok.sum()), rel=1e-12)
