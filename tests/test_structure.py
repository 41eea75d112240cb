"""The trial structure: one default rule, design matrices for any structure, no silent wrong
answers. Oracles: statsmodels OLS / MixedLM on the same data (formulas in R's treatment
contrasts), and the structure facts each case is built from."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from tests.conftest import scenario
from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.registry import default_analysis, get_analysis
from trialsim.bayes.analysis import BayesSettings, default_model
from trialsim.data import TrialData
from trialsim.simulate.trial import simulate_trials
from trialsim.structure import CovariateSpec, OutcomeSpec, TrialStructure


def _structure(**kw) -> TrialStructure:
    base = dict(
        outcomes={
            "score": OutcomeSpec("score", "continuous", better="higher"),
            "visits": OutcomeSpec("visits", "count", better="lower"),
            "well": OutcomeSpec("well", "binary", better="higher"),
        }
    )
    return TrialStructure(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "outcome", "expected"),
    [
        ({}, "score", "mixed"),  # groups in the treated arm only: partially nested
        ({"group_arms": ("control", "treatment")}, "score", "mixed"),  # groups in both arms
        # groups in both arms, each arm its own group variance: (0 + arm | group) terms
        ({"group_arms": ("control", "treatment"), "group_variance": "by-arm"}, "score", "lmm"),
        ({"group_arms": ()}, "score", "ancova"),  # no clustering at all
        (
            {"cluster": "municipality", "site": "municipality", "stratified": False},
            "score",
            "mixed-cluster",
        ),
        ({"cluster": "cohort", "groups_are_clusters": True}, "score", "mixed"),
        (
            {"cluster": "municipality", "site": "municipality", "n_periods": 4},
            "score",
            "mixed-cluster",
        ),
        ({}, "visits", "poisson"),  # counts never get a Gaussian model by default
        ({"cluster": "municipality", "site": "municipality"}, "well", "logistic"),
    ],
)
def test_one_default_rule_follows_the_structure(kw, outcome, expected):
    choice = default_analysis(_structure(**kw), outcome)
    assert choice.name == expected
    assert choice.line().startswith(f"analysis: {expected} (default: ")


def test_scenarios_default_rule_matches_their_designs():
    """Each randomisation of the SFT scenario gets the analysis its structure calls for."""
    expected = {
        "individual": "mixed",
        "waitlist": "mixed",
        "cohort": "mixed",  # a treated cohort is one group; control cohorts share nothing
        "municipality": "mixed-cluster",
        "stepped-wedge": "mixed-cluster",
    }
    for design, name in expected.items():
        s = scenario(f"design.randomisation='{design}'")
        assert default_analysis(s.structure, "psp").name == name, design
    s = scenario(outcomes=None)
    assert default_analysis(s.structure, "support_hours").name == "poisson"
    assert default_analysis(s.structure, "employed").name == "logistic"


def _random_trial(rng, *, n=120, arms=("A", "B", "C"), group_arms=(), covariates=True):
    """One hand-built trial (R = 1) with a baseline, a follow-up, optional groups and
    covariates: the oracle fits the same rows with statsmodels formulas."""
    k = len(arms)
    arm = rng.integers(0, k, n)
    base = rng.normal(50, 10, n)
    age = rng.normal(40, 10, n)
    sex = rng.integers(0, 2, n)
    group = np.full(n, -1)
    for a in (arms.index(x) for x in group_arms):
        rows = np.flatnonzero(arm == a)
        group[rows] = a * 100 + rows % 5
    g_eff = rng.normal(0, 3, 1000)
    y1 = 0.5 * base + 2.0 * arm + 0.1 * age + 1.5 * sex + rng.normal(0, 5, n)
    y1 = y1 + np.where(group >= 0, g_eff[np.maximum(group, 0)], 0)
    y1[rng.random(n) < 0.15] = np.nan
    values = np.stack([base, y1], axis=-1)[None]
    st = TrialStructure(
        arms=arms,
        allocation=tuple(1 / k for _ in arms),
        site=None,
        stratified=False,
        group_arms=tuple(group_arms),
        visit_months=(0.0, 6.0),
        outcomes={"y": OutcomeSpec("y", "continuous", better="higher")},
        covariates=(
            {
                "age": CovariateSpec("age"),
                "sex": CovariateSpec("sex", "categorical", ("F", "M")),
            }
            if covariates
            else {}
        ),
        label="individual",
    )
    _, dense_group = np.unique(group, return_inverse=True)
    dense_group = np.where(group >= 0, dense_group - (group < 0).any(), -1)
    data = TrialData(
        scenario="hand-built",
        structure=st,
        rep=np.array([0]),
        site_names=("all",),
        site=np.zeros((1, n), dtype=int),
        cluster=np.full((1, n), -1),
        period=np.zeros((1, n), dtype=int),
        arm=arm[None].astype(np.int8),
        group=dense_group[None],
        trainer=np.full((1, n), -1),
        sessions_offered=np.zeros((1, n), dtype=int),
        sessions_attended=np.zeros((1, n), dtype=int),
        outcomes={"y": values},
        observed=np.isfinite(values),
        assessor_blinded=np.ones((1, n, 2), dtype=bool),
        covariates={"age": age[None], "sex": sex[None].astype(float)} if covariates else {},
    )
    frame = pd.DataFrame(
        {
            "y": y1,
            "base": base,
            "arm": np.asarray(arms)[arm],
            "age": age,
            "sex": np.asarray(["F", "M"])[sex],
            "group": np.where(group >= 0, group, 10_000 + np.arange(n)),
        }
    ).dropna()
    return data, frame


def test_three_arms_and_covariates_give_r_treatment_contrasts():
    """ANCOVA with three arms, a numeric and a categorical covariate equals statsmodels OLS
    of ``y ~ C(arm) + base + age + C(sex)`` (reference A, level F) for both contrasts."""
    data, frame = _random_trial(np.random.default_rng(3))
    oracle = smf.ols("y ~ C(arm) + base + age + C(sex)", frame).fit()
    for arm in ("B", "C"):
        a = ancova_arrays(data.for_contrast(arm), "y")
        assert a.columns == (
            "intercept",
            "treatment",
            "arm[C]" if arm == "B" else "arm[B]",
            "baseline",
            "age",
            "sex[M]",
        )
        est = get_analysis("ancova").estimate(data.for_contrast(arm), "y")
        assert est.estimate[0] == pytest.approx(oracle.params[f"C(arm)[T.{arm}]"], rel=1e-10)
        assert est.se[0] == pytest.approx(oracle.bse[f"C(arm)[T.{arm}]"], rel=1e-10)
        assert est.df[0] == oracle.df_resid


def test_two_arm_analyses_of_a_three_arm_trial_use_only_those_arms():
    data, frame = _random_trial(np.random.default_rng(4))
    sub = frame[frame["arm"].isin(["A", "C"])]
    oracle = smf.ols("y ~ C(arm) + base + age + C(sex)", sub).fit()
    est = get_analysis("complete-case").estimate(data.for_contrast("C"), "y")
    assert est.estimate[0] == pytest.approx(oracle.params["C(arm)[T.C]"], rel=1e-10)


def test_groups_in_every_arm_fit_one_group_variance():
    """Groups in both arms (attention control): the mixed model is lme4's
    ``y ~ arm + base + (1 | group)``. Oracle: statsmodels MixedLM (REML) for the estimate and
    variances; the SE is lme4's, (X' V^-1 X)^-1 at those variances (statsmodels' own SE
    comes from the joint Hessian with the variance parameters, a different quantity)."""
    data, frame = _random_trial(
        np.random.default_rng(5), arms=("A", "B"), group_arms=("A", "B"), covariates=False
    )
    assert default_analysis(data.structure, "y").name == "mixed"
    est = get_analysis("mixed").estimate(data, "y")
    oracle = smf.mixedlm("y ~ C(arm) + base", frame, groups=frame["group"]).fit(reml=True)
    assert est.estimate[0] == pytest.approx(oracle.params["C(arm)[T.B]"], abs=1e-5)
    sigma2, tau2 = oracle.scale, float(oracle.cov_re.iloc[0, 0])
    assert est.variance["residual"][0] == pytest.approx(sigma2, rel=1e-4)
    assert est.variance["cluster"][0] == pytest.approx(tau2, rel=1e-3)
    X = np.column_stack([np.ones(len(frame)), frame["arm"] == "B", frame["base"]])
    same = frame["group"].to_numpy()[:, None] == frame["group"].to_numpy()[None, :]
    V = sigma2 * np.eye(len(frame)) + tau2 * same
    se = np.sqrt(np.linalg.inv(X.T @ np.linalg.solve(V, X))[1, 1])
    assert est.se[0] == pytest.approx(se, rel=1e-4)


def test_post_test_only_trial_is_analysed_without_baseline():
    """One visit, no baseline: an estimate (not a row of NaN), equal to OLS of y ~ arm."""
    data, frame = _random_trial(np.random.default_rng(6), arms=("A", "B"), covariates=False)
    st = replace(data.structure, visit_months=(6.0,))
    post = replace(
        data,
        structure=st,
        outcomes={"y": data.outcomes["y"][:, :, 1:]},
        observed=data.observed[:, :, 1:],
        assessor_blinded=data.assessor_blinded[:, :, 1:],
    )
    a = ancova_arrays(post, "y")
    assert "baseline" not in a.columns
    est = get_analysis("ancova").estimate(post, "y")
    oracle = smf.ols("y ~ C(arm)", frame).fit()
    assert est.estimate[0] == pytest.approx(oracle.params["C(arm)[T.B]"], rel=1e-10)


def test_mixed_cluster_refuses_identical_cluster_and_group_partitions():
    s = scenario("design.randomisation='cohort'")
    data = simulate_trials(s, 4, seed=2)
    same = replace(data, group=data.cluster.copy())  # every cluster exactly one group
    with pytest.raises(ValueError, match="cannot both be estimated"):
        get_analysis("mixed-cluster").estimate(same, "psp")


def test_cluster_level_counts_a_replicate_without_data_as_failed():
    """One replicate with no outcome data used to raise LinAlgError and abort the batch."""
    s = scenario("design.randomisation='municipality'")
    data = simulate_trials(s, 6, seed=3)
    y = data.outcomes["psp"].copy()
    y[2] = np.nan
    est = get_analysis("cluster-level").estimate(replace(data, outcomes={"psp": y}), "psp")
    assert est.failed.tolist() == [False, False, True, False, False, False]
    assert np.isfinite(est.estimate[[0, 1, 3, 4, 5]]).all()


def test_bayes_needs_a_declared_direction_and_refuses_gaussian_on_binary():
    st = _structure()
    undeclared = st.with_outcome(OutcomeSpec("score", "continuous"))
    with pytest.raises(ValueError, match="direction of benefit"):
        BayesSettings.for_outcome(undeclared, "score")
    assert BayesSettings.for_outcome(undeclared, "score", better="lower").better == "lower"
    # a count whose direction is declared "lower": P(benefit) is P(effect < 0)
    assert BayesSettings.for_outcome(st, "visits").better == "lower"
    with pytest.raises(ValueError, match="normal residuals"):
        default_model(st, "well")
    assert default_model(st, "score")[0] == "partially-nested"
    clustered = _structure(cluster="municipality", site="municipality", stratified=False)
    assert default_model(clustered, "score")[0] == "cluster"


def test_design_label_is_derived_not_a_switch():
    s = scenario("design.randomisation='municipality'")
    st = s.structure
    assert (st.cluster, st.cluster_is_site, st.stratified) == ("municipality", True, False)
    assert "randomised: clusters (municipality)" in st.describe()


def test_a_missing_covariate_leaves_the_participant_out():
    """Complete cases, as R's lm drops rows with NA in any model variable."""
    data, frame = _random_trial(np.random.default_rng(8))
    age = data.covariates["age"].copy()
    age[0, :9] = np.nan
    data = replace(data, covariates={**data.covariates, "age": age})
    frame = frame.assign(age=age[0][frame.index]).dropna()
    oracle = smf.ols("y ~ C(arm) + base + age + C(sex)", frame).fit()
    est = get_analysis("ancova").estimate(data.for_contrast("B"), "y")
    assert est.estimate[0] == pytest.approx(oracle.params["C(arm)[T.B]"], rel=1e-10)
    assert est.df[0] == oracle.df_resid


@pytest.mark.parametrize(
    ("kw", "name", "expected"),
    [
        ({}, "mixed", "psp ~ arm + baseline + municipality + (0 + treated | group)"),
        ({"group_arms": ()}, "ancova", "psp ~ arm + baseline + municipality"),
        (
            {"group_arms": ("control", "treatment")},
            "mixed",
            "psp ~ arm + baseline + municipality + (1 | group)",
        ),
        (
            {"cluster": "municipality", "stratified": False},
            "mixed-cluster",
            "psp ~ arm + baseline + (1 | municipality) + (0 + treated | group)",
        ),
        (
            {"site": "school", "cluster": "class", "group_arms": (), "visit_months": (0.0,)},
            "mixed-cluster",
            "psp ~ arm + school + (1 | class)",
        ),
        (
            {"covariates": {"sex": CovariateSpec("sex", "categorical", ("F", "M"))}},
            "mixed",
            "psp ~ arm + baseline + sex + municipality + (0 + treated | group)",
        ),
    ],
)
def test_default_analysis_is_printed_as_its_lme4_formula(kw, name, expected):
    """Every default model has its lme4 formula, from the same structure as its design."""
    st = TrialStructure(outcomes={"psp": OutcomeSpec("psp")}, **kw)
    analysis = get_analysis(default_analysis(st, "psp").name)
    assert analysis.name == name
    assert analysis.model(st, "psp") == expected


def test_repeated_model_follows_the_structure():
    from trialsim.analyse.repeated import repeated_spec

    st = TrialStructure(
        outcomes={"psp": OutcomeSpec("psp")},
        cluster="municipality",
        stratified=False,
        visit_months=(0.0, 9.0, 15.0),
    )
    spec = repeated_spec(st, "psp", "constant")
    assert spec.lme4() == (
        "psp ~ arm + baseline + factor(visit) + (1 | participant) + (0 + treated | group) "
        "+ (1 | municipality)"
    )
