"""Simulated power of trials with three or more arms (trialsim.power.multi_arm).

Oracles:

* Dunnett's single-step decisions equal ``multiplicity.dunnett``'s adjusted p-values below
  alpha (the screening by the unadjusted and Bonferroni bounds changes no decision);
* the "any arm" power of Dunnett's test for a known correlation equals the multivariate
  normal rectangle probability (scipy.stats.multivariate_normal, independent of
  trialsim's integrator), and its critical value has multivariate-t coverage 0.95
  (scipy.stats.multivariate_t); tolerance 3 Monte Carlo SEs;
* the family-wise error rate in the world without effects is <= alpha within 3 MCSE after
  Holm and Dunnett and above alpha unadjusted (by simulation of the scenario);
* each contrast's power equals the power of its two-arm sub-trial (same participants in those
  arms) within 3 MCSE of the difference;
* the OLS one-fit path equals fitting the joint model once per contrast (to 1e-10).
"""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from trialsim.analyse.multiplicity import dunnett, dunnett_critical, dunnett_rejections
from trialsim.analyse.registry import get_analysis
from trialsim.power.headlines import unbiased_scenario
from trialsim.power.multi_arm import (
    estimate_every_contrast,
    simulate_multi_arm,
    two_arm_subtrial,
)
from trialsim.power.simulation import simulate_operating_characteristics
from trialsim.scenario import load_scenario
from trialsim.simulate import simulate_trials

THREE_ARM = Path(__file__).parent.parent / "scenarios" / "three-arm.toml"


def _equi(k, rho=0.5):
    return np.full((k, k), rho) + (1 - rho) * np.eye(k)


def _small(*overrides):
    """Three arms, no clustering (ANCOVA is then valid), no bias sources: a fast world."""
    s = load_scenario(
        THREE_ARM,
        [
            "groups.icc_group=0",
            "groups.icc_trainer=0",
            "groups.icc_municipality=0",
            *overrides,
        ],
    )
    return unbiased_scenario(s)


@pytest.mark.parametrize(("k", "df"), [(2, 30.0), (3, 12.0), (2, np.inf)])
def test_dunnett_rejections_equal_adjusted_p_below_alpha(k, df):
    rng = np.random.default_rng(k)
    n = 60 if k == 2 else 8
    est = rng.normal(2.0, 1.2, (n, k))
    se = np.ones((n, k))
    corr = _equi(k, 0.4)
    p, _, _ = dunnett(est, se, corr, np.full(n, df))
    got = dunnett_rejections(np.abs(est), corr, np.full(n, df), 0.05)
    assert (got == (p < 0.05)).all()
    assert 0 < got.sum() < got.size  # both decisions occur


def test_dunnett_any_power_equals_multivariate_normal_probability():
    # two contrasts, correlation 0.5, normal (df = inf), noncentrality (2.2, 1.5)
    corr, delta = _equi(2), np.array([2.2, 1.5])
    c = dunnett_critical(corr, np.inf)
    box = stats.multivariate_normal(mean=delta, cov=corr)
    exact = 1.0 - box.cdf(np.array([c, c]), lower_limit=np.array([-c, -c]))
    rng = np.random.default_rng(3)
    z = rng.multivariate_normal(delta, corr, 20_000)
    reject = dunnett_rejections(np.abs(z), corr, np.full(len(z), np.inf), 0.05)
    power = reject.any(axis=1).mean()
    assert abs(power - exact) < 3 * np.sqrt(exact * (1 - exact) / len(z))


def test_dunnett_critical_value_has_multivariate_t_coverage():
    corr, df = _equi(3, 0.3), 15.0
    c = dunnett_critical(corr, df)
    mvt = stats.multivariate_t(loc=np.zeros(3), shape=corr, df=df, seed=1)
    covered = mvt.cdf(np.full(3, c), lower_limit=np.full(3, -c), maxpts=2_000_000)
    assert covered == pytest.approx(0.95, abs=2e-3)


def test_ols_one_fit_equals_a_fit_per_contrast():
    s = _small()
    data = simulate_trials(s, range(40), seed=5)
    a = get_analysis("ancova")
    every = estimate_every_contrast(a, data, "psp")
    for j, arm in enumerate(data.structure.contrasts):
        one = a.estimate(data.for_contrast(arm), "psp")
        np.testing.assert_allclose(every.estimate[:, j], one.estimate, rtol=1e-10)
        np.testing.assert_allclose(every.se[:, j], one.se, rtol=1e-10)
        np.testing.assert_allclose(every.p[:, j], one.p_value, rtol=1e-8, atol=1e-14)
    assert every.corr is not None and every.corr.shape == (40, 2, 2)


def test_mixed_contrasts_equal_the_analysis_per_contrast():
    s = unbiased_scenario(load_scenario(THREE_ARM))
    data = simulate_trials(s, range(12), seed=5)
    a = get_analysis("mixed")
    every = estimate_every_contrast(a, data, "psp")
    for j, arm in enumerate(data.structure.contrasts):
        one = a.estimate(data.for_contrast(arm), "psp")
        np.testing.assert_allclose(every.estimate[:, j], one.estimate, rtol=1e-10)
        np.testing.assert_allclose(every.df[:, j], one.df, rtol=1e-8)


def test_familywise_error_is_controlled_by_holm_and_dunnett_not_unadjusted():
    s = _small()
    res, _ = simulate_multi_arm(s, get_analysis("ancova"), reps=2000, seed=11, alpha=0.05)
    d = {x.adjustment: x for x in res.decisions}
    for name in ("holm", "dunnett"):
        assert d[name].fwer <= 0.05 + 3 * d[name].fwer_mcse, name
    # unadjusted: two tests at 0.05 with correlation ~0.5 give ~0.09
    assert d["none"].fwer > 0.05 + 3 * d["none"].fwer_mcse
    # Dunnett's any-arm decision is exact: its FWER is alpha (not below) within 3 MCSE
    assert abs(d["dunnett"].fwer - 0.05) < 3 * d["dunnett"].fwer_mcse
    # each contrast's type-I error is alpha
    for c in res.contrasts:
        assert abs(c.oc.type1 - 0.05) < 3 * c.oc.type1_mcse


def test_contrast_power_equals_the_two_arm_subtrial():
    s = _small()
    res, _ = simulate_multi_arm(s, get_analysis("ancova"), reps=1500, seed=21)
    for c in res.contrasts:
        sub = two_arm_subtrial(s, c.arm)
        assert sub.n_arms == 2
        (oc,), _ = simulate_operating_characteristics(sub, ["ancova"], reps=1500, seed=22)
        # the sub-trial's closed form equals the contrast's; the potential-outcome truths
        # (rounding included) of the two simulations agree within their Monte Carlo error
        assert oc.truth_analytic == pytest.approx(c.target.analytic, rel=1e-12)
        assert abs(oc.truth - c.oc.truth) < 3 * np.hypot(oc.truth_mcse, c.target.mcse)
        diff_se = np.hypot(oc.power_mcse, c.oc.power_mcse)
        assert abs(oc.power - c.oc.power) < 3 * diff_se, c.contrast
        assert abs(c.oc.bias) < 3 * c.oc.bias_mcse
        assert abs(c.oc.coverage - 0.95) < 3 * c.oc.coverage_mcse


def test_decisions_are_ordered_and_best_arm_scored():
    s = _small()
    res, worlds = simulate_multi_arm(s, get_analysis("ancova"), reps=400, seed=2)
    d = {x.adjustment: x for x in res.decisions}
    # an adjustment never adds a rejection
    for name in ("holm", "dunnett"):
        assert d[name].any_power <= d["none"].any_power
        assert d[name].all_power <= d["none"].all_power
        assert d[name].fwer <= d["none"].fwer
    assert res.best_arm == "sft-booster"  # effects 7 and 9.5
    eff = worlds["effect"]
    picked = (np.argmax(eff.estimate, axis=1) == 1).mean()
    assert res.best_arm_selected == pytest.approx(picked)


def test_sweep_has_one_row_per_contrast_equal_to_power(tmp_path):
    from trialsim.design.grid import parse_vary
    from trialsim.design.sweep import run_sweep

    over = ["groups.icc_group=0", "groups.icc_trainer=0", "groups.icc_municipality=0"]
    result = run_sweep(
        THREE_ARM,
        [parse_vary("outcomes.psp.sd=13")],
        reps=60,
        out=tmp_path,
        seed=3,
        analyses=["ancova"],
        overrides=over,
    )
    t = result.table
    assert list(t["contrast"]) == ["sft - control", "sft-booster - control"]
    seed = int(t["seed"].iloc[0])
    s = load_scenario(THREE_ARM, [*over, "outcomes.psp.sd=13"])
    direct, _ = simulate_multi_arm(s, get_analysis("ancova"), reps=60, seed=seed)
    assert list(t["power"]) == [c.oc.power for c in direct.contrasts]
    assert t["analytic_power"].notna().all()


def test_bias_rule_reads_type1_and_bias_with_sources():
    from types import SimpleNamespace

    from trialsim.power.headlines import biased

    oc = SimpleNamespace(type1=0.05, type1_mcse=0.01, bias=1.0, bias_mcse=0.2)
    assert biased(oc, 0.05, ["contamination"])  # 5 MCSE of bias
    assert not biased(oc, 0.05, [])  # no known source: only the type-I error counts
    assert biased(SimpleNamespace(type1=0.2, type1_mcse=0.01, bias=0.0, bias_mcse=0.2), 0.05, [])
    assert not biased(SimpleNamespace(**{**vars(oc), "bias": 0.5}), 0.05, ["contamination"])


def _power_json(*settings):
    import json

    from click.testing import CliRunner

    from trialsim.cli import main

    args = ["power", str(THREE_ARM), "--method", "simulation", "--reps", "200", "--seed", "3"]
    for setting in settings:
        args += ["--set", setting]
    out = CliRunner().invoke(main, [*args, "--format", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output[out.output.index("{") :])


def test_contamination_is_in_each_contrasts_estimand_so_no_contrast_is_flagged():
    """Controls are contaminated by the first active arm's staff (the simulator's rule). Each
    contrast's truth comes from the simulated potential outcomes, contamination included, so
    with unequal effects neither contrast is biased and no headline is raised."""
    result = _power_json(
        "blinding.assessor_bias=0", "dropout.mechanism='MCAR'", "design.contamination=0.5"
    )
    assert "headlines" not in result
    for a in result["analyses"]:
        if a.get("method") == "simulation":
            assert abs(a["bias"]) < 3 * a["bias_mcse"], a["contrast"]


def test_headlines_name_each_biased_contrast():
    """Unblinded assessors favour every treated arm: each contrast whose type-I error exceeds
    alpha by 3 MCSE gets its own headline, naming it, with the power at the true effect."""
    result = _power_json("blinding.assessor_bias=4", "blinding.assessor_unblinded_prob=1")
    flagged = {
        a["contrast"]
        for a in result["analyses"]
        if a.get("method") == "simulation" and a["type1"] > 0.05 + 3 * a["type1_mcse"]
    }
    assert flagged, "the assessor bias should inflate the type-I error"
    headlines = result["headlines"]
    assert {h["contrast"] for h in headlines} >= flagged
    for h in headlines:
        assert any("assessor" in x for x in h["sources"]) and "power_true_effect" in h
