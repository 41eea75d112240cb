"""Analytic power from a scenario for every randomisation unit (trialsim.power.from_scenario).

Oracles: the closed forms of trialsim.power.analytic (themselves tested against published
examples in tests/test_power_analytic.py) called with the mapped parameters; round trips of
``analytic_solve``; and the project's simulation: the analytic SE of the effect against the
empirical SE of the default analysis, and analytic power against simulated power, within
2 Monte Carlo SEs where the analysis is calibrated (no group variance the cluster mixed model
would ignore).
"""

from __future__ import annotations

import numpy as np
import pytest

from trialsim.analyse.registry import default_analysis
from trialsim.power import analytic
from trialsim.power.from_scenario import analytic_parameters, analytic_power, analytic_solve
from trialsim.power.simulation import simulate_operating_characteristics
from trialsim.scenario import DESIGNS

from .conftest import scenario

FUNCTIONS = {
    "irgt": analytic.power_irgt,
    "crt": analytic.power_crt,
    "stepped_wedge": analytic.power_stepped_wedge,
}
COUNT = {"irgt": "n_groups", "crt": "n_clusters", "stepped_wedge": "clusters_per_step"}
# assumptions of the formulas: continuous PSP, MCAR dropout, blinded assessors, a constant
# effect (dose-response 'none'), no trainer level
FORMULA_WORLD = (
    "outcomes.psp.step=0",
    "outcomes.psp.lower=-1000",
    "outcomes.psp.upper=1000",
    "blinding.assessor_unblinded_prob=0",
    "dropout.mechanism='MCAR'",
    "dropout.completion_target=0.8",
    "attendance.dose_response='none'",
    "groups.icc_trainer=0",
)


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_has_power_mde_and_sample_size(design):
    s = scenario(f"design.randomisation='{design}'")
    result = analytic_power(s)
    formula, params = analytic_parameters(s)
    assert result["formula"] == formula and 0 < result["power"] < 1
    assert result["power"] == pytest.approx(float(FUNCTIONS[formula](**params)), abs=1e-12)
    mde = analytic_solve(s, "effect", 0.8)["value"]
    assert float(FUNCTIONS[formula](**{**params, "effect": mde})) == pytest.approx(0.8, abs=1e-8)
    unknown = COUNT[formula]
    n = analytic_solve(s, unknown, 0.8, hold="n_control" if formula == "irgt" else "allocation")[
        "value"
    ]
    assert FUNCTIONS[formula](**{**params, unknown: n}) >= 0.8
    if n > 2:
        assert FUNCTIONS[formula](**{**params, unknown: n - 1}) < 0.8


def test_municipality_mapping_counts_the_arms_of_the_scenario():
    s = scenario("design.randomisation='municipality'")
    formula, p = analytic_parameters(s)
    # 9 municipalities, allocation 0.5: round(4.5) = 4 treated, 5 control
    assert formula == "crt" and p["n_clusters"] == 4 and p["cluster_ratio"] == 1.25
    sizes = np.asarray(s.sites.participants)
    assert p["cluster_size"] == pytest.approx(sizes.mean())
    assert p["cv_cluster_size"] == pytest.approx(sizes.std() / sizes.mean())


def test_stepped_wedge_mapping_follows_the_simulated_layout():
    s = scenario("design.randomisation='stepped-wedge'", "design.n_steps=4")
    formula, p = analytic_parameters(s)
    # 9 municipalities over 4 steps: the simulator puts 3, 2, 2, 2 at the steps
    assert formula == "stepped_wedge"
    np.testing.assert_array_equal(p["treatment_matrix"].sum(axis=0), [0, 3, 5, 7, 9])
    with pytest.raises(ValueError, match="solves for one of"):
        analytic_solve(s, "clusters_per_step", 0.8)


def test_count_outcome_maps_to_the_count_formula():
    # the binary and count formulas are tested in tests/test_power_analytic_glm*.py
    s = scenario(outcomes=("psp", "support_hours"))
    assert analytic_power(s, "support_hours")["formula"] == "irgt-count"


def _analytic_se(formula: str, p: dict) -> float:
    """SE of the ITT effect implied by the formula's variance (docstrings of analytic.py)."""
    completing = 1 - p["dropout"]
    if formula == "irgt":  # Var(treated mean) + Var(control mean), group variance treated only
        m = p["group_size"] * completing
        de = 1 + ((p["cv_group_size"] ** 2 + 1) * m - 1) * p["icc"]
        v_treated = p["sd"] ** 2 / (1 - p["icc"]) * de / (m * p["n_groups"])
        return float(np.sqrt(v_treated + p["sd"] ** 2 / (p["n_control"] * completing)))
    if formula == "crt":
        m = p["cluster_size"] * completing
        de = analytic.design_effect(m, p["icc"], p["cv_cluster_size"])
        k, r = p["n_clusters"], p["cluster_ratio"]
        return float(np.sqrt(p["sd"] ** 2 / (1 - p["icc"]) * de / m * (1 / k + 1 / (r * k))))
    x = analytic.stepped_wedge_design(p["clusters_per_step"], p["n_steps"])
    tau2 = p["icc"] / (1 - p["icc"]) * p["sd"] ** 2
    n = p["n_per_period"] * completing
    return float(np.sqrt(analytic.stepped_wedge_variance(x, p["sd"] ** 2 / n, tau2)))


def _check_against_simulation(design, reps, seed, *extra):
    s = scenario(*FORMULA_WORLD, f"design.randomisation='{design}'", *extra)
    formula, params = analytic_parameters(s)
    # the one rule on the structure; cohort: the partially nested model, as the formula
    analysis = default_analysis(s.structure, s.primary).name
    (oc,), _ = simulate_operating_characteristics(s, [analysis], reps=reps, seed=seed)
    assert oc.failures == 0
    return analytic_power(s)["power"], _analytic_se(formula, params), oc


@pytest.mark.parametrize(
    "design,extra",
    [
        ("municipality", ("outcomes.psp.effect=3.8",)),
        ("stepped-wedge", ("outcomes.psp.effect=3.8",)),
        ("cohort", ("outcomes.psp.effect=3.8",)),
    ],
)
def test_cluster_designs_analytic_se_and_power_match_simulation(design, extra):
    # 1000 replicates (the slow test below has 4000): the SE of the ITT effect implied by the
    # formula against the empirical SE of the design's default analysis, and the power, both
    # within 2 MC SEs. Cohort: measured at 3 x 4000 reps (seeds 3, 7, 11) the SE matches (z
    # 0.2, 0.0, 2.9) but the power is 0.013 below the formula's (0.767 vs 0.780, pooled z
    # -3.4): its noncentral t takes the group variance as known, the analysis estimates it
    # from 29 cohorts; 0.02 more is allowed for that.
    power, se, oc = _check_against_simulation(design, 1000, 3, *extra)
    assert abs(oc.empirical_se - se) < 2 * oc.empirical_se_mcse, (oc.empirical_se, se)
    slack = 0.02 if design == "cohort" else 0.0
    assert abs(oc.power - power) < 2 * oc.power_mcse + slack, (oc.power, power)


@pytest.mark.slow
@pytest.mark.parametrize(
    "design,extra",
    [
        ("municipality", ("outcomes.psp.effect=3.8",)),
        (
            "municipality",
            ("outcomes.psp.effect=3.8", "groups.icc_group=0", "groups.icc_municipality=0.05"),
        ),
        ("stepped-wedge", ("outcomes.psp.effect=3.8",)),
        (
            "stepped-wedge",
            ("outcomes.psp.effect=3.8", "groups.icc_group=0", "groups.icc_municipality=0.05"),
        ),
    ],
)
def test_cluster_designs_against_simulation_at_4000_reps(design, extra):
    """Measured (seed 3, 4000 reps, the nested mixed-cluster model; z = (simulated -
    analytic) / MCSE):

    municipality, default ICCs: power 0.592 vs 0.593 (z -0.2), SE 1.519 vs 1.490 (z 1.7);
    municipality, no groups, ICC_m 0.05: power 0.600 vs 0.606 (z -0.8), SE z 0.3;
    stepped wedge, default ICCs: power 0.403 vs 0.407 (z -0.6), SE 2.162 vs 2.203 (z -1.7);
    stepped wedge, no groups, ICC_m 0.05: SE 1.991 vs 1.951 (z 1.8), power 0.451 vs 0.495
    (z -5.6): the model still estimates a group variance that is zero here, and the
    Satterthwaite df it costs lower the power by 0.044, hence the extra 0.05 allowed below
    (its type-I error stays at 0.049).
    """
    power, se, oc = _check_against_simulation(design, 4000, 3, *extra)
    assert abs(oc.empirical_se - se) < 2 * oc.empirical_se_mcse, (oc.empirical_se, se)
    if "groups.icc_group=0" in extra and design == "stepped-wedge":
        assert abs(oc.power - power) < 2 * oc.power_mcse + 0.05, (oc.power, power)
    else:
        assert abs(oc.power - power) < 2 * oc.power_mcse, (oc.power, power)


# ---- analytic vs simulated power where SFT lives (issue: 0.672 vs 0.612 at 49 % completion)

# Simulated power of the default analysis (mixed), SFT with assessors blinded
# (blinding.assessor_bias=0) and dropout MCAR, 4000 replicates, seed 7, by
# simulate_operating_characteristics(s, ["mixed"], reps=4000, seed=7) on this commit's
# simulator: (completion, dose-response) -> (power, MCSE).
_FROZEN_SIMULATED = {
    (0.49, "none"): (0.9752, 0.0025),
    (0.49, "linear"): (0.6125, 0.0077),
    (0.8, "none"): (0.9970, 0.0009),
    (0.8, "linear"): (0.7910, 0.0064),
    (1.0, "none"): (0.9998, 0.0002),
    (1.0, "linear"): (0.8665, 0.0054),
}


def _blinded_mcar(completion, dose):
    return scenario(
        "blinding.assessor_bias=0",
        "dropout.mechanism='MCAR'",
        f"dropout.completion_target={completion}",
        f"attendance.dose_response='{dose}'",
    )


@pytest.mark.parametrize(("completion", "dose"), sorted(_FROZEN_SIMULATED))
def test_analytic_power_is_within_0015_of_the_frozen_simulation(completion, dose):
    power, mcse = _FROZEN_SIMULATED[(completion, dose)]
    analytic = analytic_power(_blinded_mcar(completion, dose))["power"]
    assert abs(analytic - power) < 0.015, (analytic, power, mcse)


def test_binomial_completer_information_matches_monte_carlo():
    """E[1 / (s_g^2 + s_e^2 / K)] over K ~ Binomial(M, c), M a discretised normal: against
    a direct Monte Carlo average (1e6 draws, relative SE < 1e-3)."""
    from trialsim.power.analytic import _binomial_group_moments, _size_distribution

    rng = np.random.default_rng(1)
    sizes, prob = _size_distribution(6.3, 0.25)
    m = rng.choice(sizes, size=1_000_000, p=prob)
    k = rng.binomial(m.astype(int), 0.49)
    direct = np.where(k > 0, 1.0 / (0.1 + 1.0 / np.maximum(k, 1)), 0.0).mean()
    info, nonempty = _binomial_group_moments(6.3, 0.25, 0.49, 0.1, 1.0)
    assert info == pytest.approx(direct, rel=3e-3)
    assert nonempty == pytest.approx((k > 0).mean(), abs=2e-3)
    assert float((sizes * prob).sum()) == pytest.approx(6.3, abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("completion", "dose"), [(0.49, "linear"), (0.8, "linear")])
def test_analytic_power_matches_a_fresh_simulation(completion, dose):
    s = _blinded_mcar(completion, dose)
    (oc,), _ = simulate_operating_characteristics(s, ["mixed"], reps=4000, seed=7)
    assert abs(analytic_power(s)["power"] - oc.power) < 0.015 + 2 * oc.power_mcse
