"""Analytic power of the decisions over several arms (trialsim.power.analytic_arms).

Oracles:

* multivariate noncentral t rectangle and "every arm rejected" probabilities against R's
  mvtnorm 1.1.3 (``pmvt(..., type = "Kshirsagar")``, Genz-Bretz to abseps 1e-9; numbers frozen
  below with the calls that made them);
* against scipy.stats.multivariate_normal's CDF (Genz) for df = inf, an implementation
  independent of the one-factor integral used here;
* Dunnett's critical value: Dunnett (1955, JASA 50:1096, Table 2a) gives 2.38 for two
  contrasts, equal arms (correlation 0.5), 20 df; mvtnorm's pmvt puts exactly 0.95 inside the
  box at trialsim's value 2.378689980 (qmvt's own root, 2.378838, is only to ptol 1e-3);
* the correlation of contrasts sharing the reference arm equals
  ``sqrt(n1 n2 / ((n1 + n0)(n2 + n0)))`` without groups;
* the per-contrast powers equal the one-contrast formula (power_irgt) and the decision
  powers equal the simulated ones on three-arm.toml with the bias sources off within 3 MCSE.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from trialsim.analyse.multiplicity import dunnett_critical
from trialsim.power.analytic import irgt_moments, power_irgt
from trialsim.power.analytic_arms import (
    Contrasts,
    contrast_correlation,
    decision_power,
    decision_table,
    rectangle_probability,
    scenario_contrasts,
)
from trialsim.power.from_scenario import analytic_power
from trialsim.power.headlines import unbiased_scenario
from trialsim.scenario import load_scenario

THREE_ARM = Path(__file__).parent.parent / "scenarios" / "three-arm.toml"

# R 4, mvtnorm 1.1.3:
#   alg <- GenzBretz(maxpts = 5e6, abseps = 1e-9, releps = 0)
#   R2 <- matrix(c(1, .5, .5, 1), 2)
#   r <- sqrt(c(0.5, 0.4, 0.6)); R3 <- outer(r, r); diag(R3) <- 1
#   pmvt(lower = c(-2.1, -2.1), upper = c(2.1, 2.1), delta = c(2.2, 1.5), df = 20,
#        corr = R2, type = "Kshirsagar", algorithm = alg)             # 0.3951150054 (err 2.5e-8)
#   pmvt(lower = -c(2.3, 2.4, 2.2), upper = c(2.3, 2.4, 2.2), delta = c(2.5, 1, 3),
#        df = 35, corr = R3, type = "Kshirsagar", algorithm = alg)    # 0.1594512219 (err 9.8e-8)
# and the "every |T_j| > w_j" probabilities as the sum of pmvt over the 2^K sign regions
# (lower = ifelse(sign, w, -Inf), upper = ifelse(sign, Inf, -w)), independent of the
# product form used here:                      K = 2: 0.2365181752, K = 3: 0.08021290392
_R2 = np.sqrt([0.5, 0.5])
_R3 = np.sqrt([0.5, 0.4, 0.6])


def _contrasts(half_width, ncp, loading, df):
    """Contrasts whose unadjusted critical values are ``half_width``."""
    df = np.full(len(ncp), float(df))
    scale = np.asarray(half_width) / stats.t.isf(0.025, df)
    arms = tuple("abc"[: len(ncp)])
    return Contrasts(arms, np.asarray(ncp), df, scale, np.asarray(loading, dtype=float), 0.05)


def test_rectangle_probabilities_equal_mvtnorm():
    assert rectangle_probability([2.1, 2.1], [2.2, 1.5], _R2, 20.0) == pytest.approx(
        0.3951150054, abs=2e-8
    )
    assert rectangle_probability([2.3, 2.4, 2.2], [2.5, 1.0, 3.0], _R3, 35.0) == pytest.approx(
        0.1594512219, abs=3e-7
    )


def test_every_arm_rejected_equals_mvtnorm_sign_regions():
    two = _contrasts([2.1, 2.1], [2.2, 1.5], _R2, 20)
    three = _contrasts([2.3, 2.4, 2.2], [2.5, 1.0, 3.0], _R3, 35)
    assert decision_power(two, "all") == pytest.approx(0.2365181752, abs=2e-8)
    assert decision_power(three, "all") == pytest.approx(0.08021290392, abs=3e-7)
    assert decision_power(two, "any") == pytest.approx(1 - 0.3951150054, abs=2e-8)


def test_normal_case_equals_scipy_multivariate_normal():
    loading, ncp, w = _R3, np.array([1.0, -0.5, 2.0]), np.array([1.9, 2.0, 2.1])
    cov = contrast_correlation(loading**2)
    genz = stats.multivariate_normal.cdf(
        w, mean=-ncp, cov=cov, lower_limit=-w, abseps=1e-9, releps=0, rng=1
    )
    assert rectangle_probability(w, ncp, loading, np.inf) == pytest.approx(genz, abs=1e-7)


def test_dunnett_critical_value_is_dunnetts_table_and_mvtnorms_box():
    c = dunnett_critical(contrast_correlation([0.5, 0.5]), 20.0)
    assert round(c, 2) == 2.38  # Dunnett 1955, Table 2a: 2 contrasts, 20 df, two-sided 0.05
    # R: pmvt(-rep(2.378689980181314, 2), rep(2.378689980181314, 2), df = 20, corr = R2)
    # = 0.95 (error 1e-15): trialsim's value is the exact quantile
    assert c == pytest.approx(2.378689980181314, abs=1e-8)
    # and the analytic FWER of Dunnett's test (no effect) is alpha
    null = Contrasts(("a", "b"), np.zeros(2), np.full(2, 20.0), np.ones(2), _R2, 0.05)
    assert decision_power(null, "any", "dunnett") == pytest.approx(0.05, abs=1e-8)


def test_shared_reference_correlation_is_dunnetts_formula():
    n0, n = 40, (30, 50)
    shares = [
        irgt_moments(1.0, n_groups=k, group_size=1, n_control=n0, icc=0.0).control_share for k in n
    ]
    corr = contrast_correlation(shares)[0, 1]
    assert corr == pytest.approx(np.sqrt(n[0] * n[1] / ((n[0] + n0) * (n[1] + n0))), rel=1e-12)


def test_adjustments_are_ordered():
    c = _contrasts([2.09, 2.09], [2.2, 1.5], _R2, 20)
    for d in ("each", "any", "all"):
        none, bonf, dun = (decision_power(c, d, a) for a in ("none", "bonferroni", "dunnett"))
        assert none > dun > bonf, d  # Dunnett's critical value lies between the two
    assert decision_power(c, "all") < decision_power(c, "each") < decision_power(c, "any")


def test_contrast_powers_equal_the_one_contrast_formula():
    s = load_scenario(THREE_ARM)
    table = decision_table(scenario_contrasts(s, "psp"))
    for j, arm in enumerate(s.arm_labels[1:]):
        one = analytic_power(s, "psp", arm=arm)["power"]
        assert table["adjustments"]["none"]["contrast_power"][j] == pytest.approx(one, rel=1e-12)
        two = analytic_power(s, "psp", arm=arm, alpha=0.025)["power"]
        assert table["adjustments"]["bonferroni"]["contrast_power"][j] == pytest.approx(two)
    params = analytic_power(s, "psp", arm="sft")
    inputs = {k: v for k, v in params.items() if k not in ("formula", "power", "residual_note")}
    assert params["power"] == pytest.approx(power_irgt(**inputs))


def _simulated_and_analytic(s, reps, seed):
    """Simulated decisions of the mixed model (one group variance: the model the formula
    describes) and the analytic ones, on scenario ``s``."""
    from trialsim.analyse.registry import get_analysis
    from trialsim.power.multi_arm import simulate_multi_arm

    res, _ = simulate_multi_arm(s, get_analysis("mixed"), reps=reps, seed=seed)
    return res, decision_table(scenario_contrasts(s, "psp"))["adjustments"]


def _assert_agree(res, analytic):
    """Every simulated decision within 3 MCSE of the analytic one; Holm's "any" equals
    Bonferroni's, Holm's "all" is at least Bonferroni's (within 3 MCSE)."""
    sim = {d.adjustment: d for d in res.decisions}
    for adj, name in (("none", "none"), ("dunnett", "dunnett"), ("holm", "bonferroni")):
        d, a = sim[adj], analytic[name]
        assert abs(d.any_power - a["any"]) < 3 * d.any_power_mcse, (adj, d.any_power, a["any"])
        if adj == "holm":
            assert d.all_power > a["all"] - 3 * d.all_power_mcse
        else:
            assert abs(d.all_power - a["all"]) < 3 * d.all_power_mcse, (adj, d.all_power)
    for j, c in enumerate(res.contrasts):
        assert abs(c.oc.power - analytic["none"]["contrast_power"][j]) < 3 * c.oc.power_mcse


def test_decisions_agree_with_simulation_on_three_arms_without_bias():
    s = unbiased_scenario(load_scenario(THREE_ARM))
    _assert_agree(*_simulated_and_analytic(s, reps=400, seed=4))


@pytest.mark.slow
def test_decisions_agree_with_simulation_at_1500_reps():
    s = unbiased_scenario(load_scenario(THREE_ARM))
    _assert_agree(*_simulated_and_analytic(s, reps=1500, seed=8))


@pytest.mark.slow
def test_four_arm_decisions_are_conservative_by_the_formulas_df():
    """Four arms, unequal allocation (three contrasts, unequal correlations). The one-contrast
    formula's Satterthwaite df (about 27 here) are below the mixed model's (median about 70 in
    simulation), so the adjusted analytic powers sit up to ~0.05 below the simulated ones
    (measured at 500 replicates: Dunnett 'any' 0.507 vs 0.570 +- 0.022): analytic <=
    simulated + 3 MCSE, and simulated - analytic < 0.05 + 3 MCSE."""
    s = unbiased_scenario(
        load_scenario(
            THREE_ARM,
            [
                "design.arms=['control','sft','sft-booster','sft-online']",
                "design.allocation=[0.3,0.25,0.25,0.2]",
                "outcomes.psp.effect=[5.0,6.5,4.0]",
                "outcomes.mhrm.effect=[6.0,8.0,4.0]",
                "outcomes.who5.effect=[4.0,5.5,3.0]",
                "sites.participants=[110,100,90,80,70,60,60,50,50]",
            ],
        )
    )
    res, analytic = _simulated_and_analytic(s, reps=1500, seed=8)
    sim = {d.adjustment: d for d in res.decisions}
    for adj, name in (("none", "none"), ("dunnett", "dunnett"), ("holm", "bonferroni")):
        for what in ("any", "all"):
            got, mcse = getattr(sim[adj], f"{what}_power"), getattr(sim[adj], f"{what}_power_mcse")
            assert analytic[name][what] < got + 3 * mcse, (adj, what)
            if adj != "holm" or what == "any":
                assert got - analytic[name][what] < 0.05 + 3 * mcse, (adj, what)
