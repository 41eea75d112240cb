"""Trial structures beyond two arms: three or more arms, attention-control groups in the
reference arm, covariates, any outcome name; and the SFT output unchanged by them.

Statistical checks use tolerances of 3-3.5 Monte Carlo standard errors (MCSE), stated at each.
"""

import hashlib
import json
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.scenario import (
    ScenarioError,
    arm_counts,
    load_scenario,
    read_scenario_raw,
    scenario_from_dict,
)
from trialsim.simulate import simulate_trials

from .conftest import CLEAN, ROOT, SFT

LIB = ROOT / "scenarios"

# sha256 of the SFT scenario's first 64 replicates (seed 1) as simulated before arms,
# control groups and covariates were generalised (integer-valued outcomes exactly, eq5d to
# 1e-6, observed, group, arm, trainer, sessions attended)
SFT_DIGEST = "011620fe89e2d83d9fffa1374ff9b28182bc0efdf379e78e363b68b3f00143d8"


def _digest(d) -> str:
    h = hashlib.sha256()
    for k in ["psp", "mhrm", "who5", "support_hours", "employed"]:
        h.update(np.nan_to_num(d.outcomes[k], nan=-999).astype(np.int64).tobytes())
    eq5d = np.nan_to_num(np.round(d.outcomes["eq5d"], 6) * 1e6, nan=-999)
    h.update(eq5d.astype(np.int64).tobytes())
    for a in (d.observed, d.group, d.arm, d.trainer, d.sessions_attended):
        h.update(np.asarray(a).astype(np.int64).tobytes())
    return h.hexdigest()


def test_sft_output_is_unchanged_by_the_generalisation(sft):
    assert _digest(simulate_trials(sft, 64, seed=1)) == SFT_DIGEST


# ---- three arms ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_arm():
    s = load_scenario(LIB / "three-arm.toml")
    return s, simulate_trials(s, 100, seed=2)


def test_three_arm_allocation_is_exact_in_every_municipality(three_arm):
    s, d = three_arm
    sizes = np.asarray(s.sites.participants)
    expected = arm_counts(sizes, s.arm_allocation)  # (M, 3)
    assert (np.abs(expected - sizes[:, None] / 3) <= 1).all()
    site = d.site[0]
    for r in range(d.n_reps):
        counts = np.stack([np.bincount(site, weights=d.arm[r] == a) for a in range(3)], 1)
        np.testing.assert_array_equal(counts, expected)
    # a random allocation: every participant is in each arm in some replicates
    assert all(len(np.unique(d.arm[:, i])) == 3 for i in range(0, d.n_participants, 17))


def test_each_active_arm_forms_its_own_groups(three_arm):
    s, d = three_arm
    g = s.groups
    assert (d.group[d.arm == 0] == -1).all() and (d.group[d.arm > 0] >= 0).all()
    assert (d.sessions_offered[d.arm == 0] == 0).all()
    site = d.site[0]
    for r in range(d.n_reps):
        for grp in np.unique(d.group[r][d.group[r] >= 0]):
            members = d.group[r] == grp
            assert len(np.unique(d.arm[r][members])) == 1, "a group mixes arms"
            assert len(np.unique(site[members])) == 1, "a group spans municipalities"
            assert g.min_size <= members.sum() <= g.max_size
            # trainers run groups of one arm
            trainers = d.trainer[r] == d.trainer[r][members][0]
            assert len(np.unique(d.arm[r][trainers])) == 1


def test_three_arm_effects_per_arm():
    """Each arm's mean difference from the reference is its own effect x mean dose (no
    dropout, no rounding, blinded, no expectancy bias); tolerance 3.5 MCSE."""
    from trialsim.power.simulation import mean_dose_factor

    s = load_scenario(
        LIB / "three-arm.toml", [*CLEAN, "outcomes.psp.expectancy_bias=0"]
    ).with_outcomes(["psp"])
    d = simulate_trials(s, 256, seed=4)
    y = d.outcomes["psp"][:, :, -1]
    dose = mean_dose_factor(s)
    for a, effect in enumerate(s.arm_effects("psp"), start=1):
        diff = np.array(
            [y[r][d.arm[r] == a].mean() - y[r][d.arm[r] == 0].mean() for r in range(256)]
        )
        mcse = diff.std(ddof=1) / np.sqrt(len(diff))
        assert abs(diff.mean() - effect * dose) < 3.5 * mcse


# ---- attention-control groups -------------------------------------------------------------


def test_attention_control_groups_are_pure_and_attend_their_own_course():
    s = load_scenario(LIB / "attention-control.toml", ["groups.control.sessions_offered=20"])
    d = simulate_trials(s, 30, seed=3)
    assert (d.group >= 0).all(), "everyone is in a group in both arms"
    for r in range(d.n_reps):
        for grp in np.unique(d.group[r]):
            assert len(np.unique(d.arm[r][d.group[r] == grp])) == 1
    assert (d.sessions_offered[d.arm == 0] == 20).all()
    assert (d.sessions_offered[d.arm == 1] == s.design.sessions_offered).all()
    assert (d.sessions_attended <= d.sessions_offered).all()
    assert d.sessions_attended[d.arm == 0].mean() > 0


def test_control_arm_groups_have_the_declared_icc():
    """One-way ANOVA (method of moments) on the control arm's final visit in each replicate:
    the between-group variance estimate (MSB - MSW) / n0 is unbiased for sd^2 s_c^2 and MSW
    for sd^2; their means over 512 replicates give the ICC. Tolerance 3 MCSE (delta method
    from the per-replicate estimates)."""
    icc = 0.1
    s = load_scenario(
        LIB / "attention-control.toml", [*CLEAN, f"groups.control.icc_group={icc}"]
    ).with_outcomes(["psp"])
    d = simulate_trials(s, 512, seed=5)
    y = d.outcomes["psp"][:, :, -1]
    between, within = [], []
    for r in range(d.n_reps):
        ctrl = d.arm[r] == 0
        grp, yr = d.group[r][ctrl], y[r][ctrl]
        _, codes = np.unique(grp, return_inverse=True)
        n_j = np.bincount(codes)
        means = np.bincount(codes, weights=yr) / n_j
        n, k = len(yr), len(n_j)
        msb = (n_j * (means - yr.mean()) ** 2).sum() / (k - 1)
        msw = ((yr - means[codes]) ** 2).sum() / (n - k)
        n0 = (n - (n_j**2).sum() / n) / (k - 1)
        between.append((msb - msw) / n0)
        within.append(msw)
    b, w = np.array(between), np.array(within)
    sd = s.outcomes["psp"].sd
    # variance components themselves: between sd^2 icc/(1-icc), within sd^2
    assert abs(w.mean() - sd**2) < 3 * w.std(ddof=1) / np.sqrt(len(w))
    expected_b = sd**2 * icc / (1 - icc)
    assert abs(b.mean() - expected_b) < 3 * b.std(ddof=1) / np.sqrt(len(b))
    est = b.mean() / (b.mean() + w.mean())
    # delta method: d est / d b = w / (b + w)^2, d est / d w = -b / (b + w)^2
    grad = np.array([w.mean(), -b.mean()]) / (b.mean() + w.mean()) ** 2
    mcse = np.sqrt(grad @ np.cov(np.stack([b, w])) @ grad / len(b))
    assert abs(est - icc) < 3 * mcse
    # and the treated arm keeps the scenario's own group ICC (not the control's)
    assert s.groups.icc_group != icc


def test_attention_control_has_no_treatment_effect_or_bias():
    s = load_scenario(LIB / "attention-control.toml", list(CLEAN)).with_outcomes(["psp"])
    d = simulate_trials(s, 256, seed=6)
    y = d.outcomes["psp"]
    change = (y[:, :, -1] - y[:, :, 0])[d.arm == 0]
    assert abs(change.mean()) < 3.5 * change.std() / np.sqrt(256)  # visits share the mean


# ---- covariates ---------------------------------------------------------------------------

COVARIATES = (
    "covariates.age.type='numeric'",
    "covariates.age.mean=40",
    "covariates.age.sd=12",
    "covariates.age.effect=0.3",
    "covariates.site_type.type='categorical'",
    "covariates.site_type.levels=['a', 'b', 'c']",
    "covariates.site_type.probs=[0.5, 0.3, 0.2]",
    "covariates.site_type.effects=[0.0, 0.5, -0.4]",
)


def test_covariate_effects_are_recovered_by_ols():
    """OLS of the control arm's outcome on the covariates, at baseline and at the final
    visit, replicate by replicate: the mean coefficients equal sd x effect (per covariate SD)
    and sd x effects[level] within 3.5 MCSE."""
    s = load_scenario(SFT, [*CLEAN, *COVARIATES]).with_outcomes(["psp"])
    d = simulate_trials(s, 256, seed=8)
    sd = s.outcomes["psp"].sd
    age, kind = d.covariates["age"], d.covariates["site_type"].astype(int)
    assert set(np.unique(kind)) == {0, 1, 2}
    np.testing.assert_allclose(np.bincount(kind.ravel()) / kind.size, [0.5, 0.3, 0.2], atol=0.01)
    assert abs(age.mean() - 40) < 0.1 and abs(age.std() - 12) < 0.1
    truth = np.array([sd * 0.3, sd * 0.5, sd * -0.4])
    for visit in (0, -1):
        coefs = []
        for r in range(d.n_reps):
            ctrl = d.arm[r] == 0
            x = np.column_stack(
                [
                    np.ones(ctrl.sum()),
                    (age[r][ctrl] - 40) / 12,
                    kind[r][ctrl] == 1,
                    kind[r][ctrl] == 2,
                ]
            )
            beta, *_ = np.linalg.lstsq(x, d.outcomes["psp"][r, ctrl, visit], rcond=None)
            coefs.append(beta[1:])
        coefs = np.array(coefs)
        mcse = coefs.std(axis=0, ddof=1) / np.sqrt(len(coefs))
        assert (np.abs(coefs.mean(axis=0) - truth) < 3.5 * mcse).all(), (visit, coefs.mean(0))


def test_covariates_do_not_change_the_other_streams(sft):
    base = simulate_trials(sft.with_outcomes(["psp"]), 3, seed=9)
    s = load_scenario(SFT, list(COVARIATES)).with_outcomes(["psp"])
    with_cov = simulate_trials(s, 3, seed=9)
    np.testing.assert_array_equal(base.arm, with_cov.arm)
    np.testing.assert_array_equal(base.group, with_cov.group)
    frame = with_cov.to_frame()
    assert set(frame["site_type"].unique()) <= {"a", "b", "c"} and "age" in frame


def test_continuous_outcome_with_any_name():
    s = load_scenario(
        SFT,
        [
            "outcomes.Score_2.type='continuous'",
            "outcomes.Score_2.mean=-3.0",
            "outcomes.Score_2.sd=2.0",
            "outcomes.Score_2.effect=1.0",
            "dropout.completion_target=1",
        ],
    ).with_outcomes(["Score_2"])
    d = simulate_trials(s, 64, seed=10)
    y = d.outcomes["Score_2"]
    assert np.isfinite(y).all() and (y != np.round(y)).any()  # neither rounded nor clipped
    assert abs(y[:, :, 0].mean() + 3.0) < 0.05
    assert s.structure.outcomes["Score_2"].type == "continuous"


# ---- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["design.arms=['a']"], "design.arms needs at least 2 distinct arm labels"),
        (["design.arms=['a', 'a']"], "design.arms needs at least 2 distinct arm labels"),
        (["design.allocation=[0.3, 0.7]"], "allocation [0.3, 0.7] disagrees with allocation_t"),
        (
            ["design.arms=['a', 'b', 'c']", "design.allocation=[0.5, 0.3, 0.3]"],
            "design.allocation shares must sum to 1",
        ),
        (
            ["design.arms=['a', 'b', 'c']", "design.allocation=[0.5, 0.5]"],
            "design.allocation needs one share per arm (3: a, b, c)",
        ),
        (["outcomes.psp.effect=[1.0, 2.0]"], "outcomes.psp.effect needs a number or one value"),
        (
            ["design.arms=['a', 'b', 'c']", "outcomes.employed.odds_ratio=[1.0, 2.0, 3.0]"],
            "outcomes.employed.odds_ratio needs a number or one value per non-reference arm (2",
        ),
        (
            ["design.arms=['a', 'b', 'c']", "design.randomisation='municipality'"],
            "design.arms 3 arms are supported for individual, waitlist randomisation only",
        ),
        (
            ["groups.control.icc_group=0.05", "design.randomisation='cohort'"],
            "groups.control groups in the control arm are supported for individual, waitlist",
        ),
        (
            ["groups.control.icc_group=0.05", "sites.recruitment.link_trial=true"],
            "sites.recruitment.link_trial = true supports two arms",
        ),
        (["design.visit_months=[]"], "design.visit_months must start with 0"),
        (["design.visit_months=[0]"], "design.visit_months must start with 0"),
        (["design.visit_months=5"], "design.visit_months: Input should be a valid tuple"),
        (
            ["covariates.x.type='categorical'", "covariates.x.levels=['a', 'b']",
             "covariates.x.probs=[0.5, 0.6]"],
            "covariates.x.probs must sum to 1",
        ),
        (
            ["covariates.x.type='categorical'", "covariates.x.levels=['a', 'b']",
             "covariates.x.probs=[0.5, 0.5]", "covariates.x.effects=[0.1]"],
            "covariates.x.effects needs one effect per level (2)",
        ),
        (["covariates.x.type='numeric'", "covariates.x.sd=0"], "covariates.x.sd: Input should be"),
        (["outcomes.psp.effect='big'"], "outcomes.psp.effect: Input should be a valid"),
    ],
)  # fmt: skip
def test_bad_structures_are_one_line_errors(overrides, expected):
    with pytest.raises(ScenarioError) as info:
        load_scenario(SFT, overrides)
    message = str(info.value)
    assert expected in message and "sft-19m.toml" in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [("2bad", "must start with a letter"), ("bad-name", "must start with a letter"),
     ("arm", "is a column of the trial data table")],
)  # fmt: skip
def test_outcome_and_covariate_names(name, expected):
    raw = read_scenario_raw(SFT)
    outcome = {"type": "continuous", "mean": 0.0, "sd": 1.0}
    bad_outcome = {**raw, "outcomes": {**raw["outcomes"], name: outcome}}
    with pytest.raises(ScenarioError, match=f"outcomes.{name} name {expected}"):
        scenario_from_dict(bad_outcome, source="x.toml")
    bad_cov = {**raw, "covariates": {name: {"type": "numeric"}}}
    with pytest.raises(ScenarioError, match=f"covariates.{name} name {expected}"):
        scenario_from_dict(bad_cov, source="x.toml")


def test_two_arm_allocation_key_sets_allocation_treated():
    s = load_scenario(LIB / "depression-bdi.toml", ["design.allocation=[0.4, 0.6]"])
    assert s.design.allocation_treated == 0.6 and s.arm_allocation == (0.4, 0.6)
    one = load_scenario(SFT, ["outcomes.psp.effect=[5.0]"])
    assert one.outcomes["psp"].effect == 5.0  # a one-element list is the number


# ---- library scenarios and the sidecar ----------------------------------------------------


def test_library_structures_say_what_they_are():
    attention = "\n".join(load_scenario(LIB / "attention-control.toml").structure.describe())
    assert "arms: attention-control (reference), sft; allocation 50% / 50%" in attention
    assert "delivery groups: in every arm" in attention
    three = "\n".join(load_scenario(LIB / "three-arm.toml").structure.describe())
    assert "arms: control (reference), sft, sft-booster; allocation 33% / 33% / 33%" in three
    assert "delivery groups: in sft, sft-booster only (partially nested)" in three
    bdi = load_scenario(LIB / "depression-bdi.toml")
    text = "\n".join(bdi.structure.describe())
    assert "randomised: people" in text and "design: individual" in text
    assert "outcome bdi: bounded [0, 63], lower is better, MCID 5" in text
    assert "covariate drug: categorical, levels No, Yes" in text
    assert "covariate length: categorical, levels <6m, >6m" in text
    assert "delivery groups: in group-cbt only" in text
    d = simulate_trials(bdi, 2, seed=1)
    assert set(d.covariates) == {"drug", "length"} and d.outcomes["bdi"].shape == (2, 200, 5)


def test_simulate_writes_the_structure_beside_the_data(tmp_path):
    out = tmp_path / "three.csv"
    result = CliRunner().invoke(
        main, ["simulate", str(LIB / "three-arm.toml"), "--reps", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    sidecar = tmp_path / "three.csv.trialsim.json"
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    from trialsim.structure import structure_from_dict

    structure = structure_from_dict(record["structure"])
    assert structure.arms == ("control", "sft", "sft-booster")
    assert structure.outcomes["support_hours"].type == "count"
    assert record["provenance"]["scenario"] == "three-arm"
    assert record["provenance"]["seed"] is not None
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_library_files_are_valid_toml_with_comments():
    for name in ("attention-control", "three-arm", "depression-bdi"):
        text = (LIB / f"{name}.toml").read_text(encoding="utf-8")
        assert text.startswith("# Question: ") and "assumption" in text
        tomllib.loads(text)


# ---- analytic power with groups in both arms -----------------------------------------------


def _ancova_effects(d, outcome: str) -> np.ndarray:
    """Per replicate: the OLS ANCOVA arm coefficient (final visit ~ arm + baseline +
    municipality), the estimate whose variance the analytic formula describes."""
    y, site = d.outcomes[outcome], d.site[0]
    dummies = (site[:, None] == np.arange(1, site.max() + 1)).astype(float)
    out = []
    for r in range(d.n_reps):
        x = np.column_stack([np.ones(len(site)), d.arm[r] == 1, y[r, :, 0], dummies])
        beta, *_ = np.linalg.lstsq(x, y[r, :, -1], rcond=None)
        out.append(beta[1])
    return np.array(out)


def test_analytic_variance_with_control_groups_matches_simulation():
    """Attention-control groups (ICC 0.15) in the reference arm: the analytic variance of the
    effect estimate, ``sum_a sigma^2 (1 + (m_a - 1) rho_a) / n_a`` with each arm's groups
    (``(effect / ncp)^2`` of power_irgt), equals the variance of the ANCOVA estimate over
    1024 simulated trials within 3 MCSE (relative MCSE of a variance sqrt(2 / (R - 1))), and
    differs from the formula that ignores the control groups by more than that. No dropout,
    no rounding, dose-response none (no effect heterogeneity)."""
    from trialsim.power.analytic import irgt_moments
    from trialsim.power.from_scenario import analytic_parameters

    s = load_scenario(
        LIB / "attention-control.toml",
        [*CLEAN, "groups.control.icc_group=0.15", "attendance.dose_response='none'"],
    ).with_outcomes(["psp"])
    formula, p = analytic_parameters(s)
    assert formula == "irgt" and p["n_control_groups"] == 27 and p["control_icc"] > 0.15

    def variance(**extra):
        m = irgt_moments(
            p["effect"], n_groups=p["n_groups"], group_size=p["group_size"],
            n_control=p["n_control"], sd=p["sd"], icc=p["icc"],
            cv_group_size=p["cv_group_size"], dropout=p["dropout"], **extra,
        )  # fmt: skip
        return (p["effect"] / m.ncp) ** 2

    analytic = variance(n_control_groups=p["n_control_groups"], control_icc=p["control_icc"])
    ignoring = variance()
    est = _ancova_effects(simulate_trials(s, 1024, seed=11), "psp")
    empirical = est.var(ddof=1)
    mcse = empirical * np.sqrt(2 / (len(est) - 1))
    assert abs(empirical - analytic) < 3 * mcse, (empirical, analytic, ignoring)
    assert analytic - ignoring > 3 * mcse
    # the ITT effect is recovered too (3 MCSE)
    assert abs(est.mean() - p["effect"]) < 3 * est.std(ddof=1) / np.sqrt(len(est))


def test_analytic_power_for_three_arms_needs_the_arm():
    from trialsim.power.from_scenario import analytic_power

    s = load_scenario(LIB / "three-arm.toml")
    with pytest.raises(ValueError, match="analytic power for 3 arms .* --method simulation"):
        analytic_power(s)
    sft, booster = analytic_power(s, arm="sft"), analytic_power(s, arm="sft-booster")
    assert booster["effect"] > sft["effect"] > 0 and booster["power"] > sft["power"]
    assert sft["n_control"] == sum(
        arm_counts(np.asarray(s.sites.participants), s.arm_allocation)[:, 0]
    )
