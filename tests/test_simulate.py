"""The simulator: reproducibility, trial structure, and calibration against its parameters.

Calibration tolerances are 3 Monte Carlo standard errors unless stated otherwise.
"""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import special, stats

from trialsim.cli import main
from trialsim.simulate import dropout, outcomes, simulate_trials
from trialsim.simulate.layout import build_layout
from trialsim.simulate.randomise import assign_arms

from .conftest import CLEAN, SFT, scenario

# ---- reproducibility ----------------------------------------------------------------------------


def test_same_seed_gives_identical_table(sft):
    a = simulate_trials(sft, 3, seed=7).to_frame()
    b = simulate_trials(sft, 3, seed=7).to_frame()
    pd.testing.assert_frame_equal(a, b)
    c = simulate_trials(sft, 3, seed=8).to_frame()
    assert not a["psp"].equals(c["psp"])


def test_chunks_threads_and_single_replicates_equal_one_batch():
    s = scenario(outcomes=("psp", "who5", "employed"))
    whole = simulate_trials(s, 300, seed=3, threads=1)
    chunks = [
        simulate_trials(s, range(a, b), seed=3) for a, b in [(0, 100), (100, 257), (257, 300)]
    ]
    single = simulate_trials(s, [270], seed=3)
    threaded = simulate_trials(s, 300, seed=3, threads=2)
    for name, y in whole.outcomes.items():
        joined = np.concatenate([c.outcomes[name] for c in chunks])
        np.testing.assert_array_equal(joined, y)
        np.testing.assert_array_equal(threaded.outcomes[name], y)
        np.testing.assert_array_equal(single.outcomes[name][0], y[270])
    np.testing.assert_array_equal(single.group[0], whole.group[270])


def test_visit_by_visit_kernels_equal_their_broadcast_definitions():
    """The (B, N, V) arrays are built visit by visit for speed (a (B, N, 1) x (V,) broadcast
    is ~20x slower); they must equal the plain broadcast definitions exactly."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 7))
    flag = rng.random((4, 7)) < 0.5
    post = np.arange(3) > 0
    np.testing.assert_array_equal(outcomes.by_visit(False, flag, 3), flag[:, :, None] & post)
    np.testing.assert_array_equal(outcomes.by_visit(1.0, x, 3), np.where(post, x[:, :, None], 1.0))
    np.testing.assert_array_equal(outcomes.by_visit(x, x, 2), np.stack([x, x], axis=-1))
    # monotone dropout: visit by visit equals the cumulative product of "stays" draws
    lp = rng.normal(size=(50, 30))
    observed = dropout.draw_observed(-1.0, lp, 4, rng=np.random.default_rng(1))
    u = np.random.default_rng(1).random((50, 30, 3))
    stays = u >= special.expit(-1.0 + lp)[..., None]
    np.testing.assert_array_equal(observed[..., 1:], np.cumprod(stays, axis=-1, dtype=bool))
    assert observed[..., 0].all()


# ---- structure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n,p", [(36, 0.03), (36, 0.6), (36, 0.97), (5, 0.5), (200, 0.3)])
def test_binomial_by_inversion_has_the_binomial_distribution(n, p):
    """The attendance sampler's binomial draws against scipy's pmf: a chi-square test on
    200 000 draws (cells with expected count >= 5 pooled), and p = 0 / 1 give 0 / n."""
    from trialsim.simulate.attendance import _binomial_by_inversion

    rng = np.random.default_rng(17)
    draws = _binomial_by_inversion(n, np.full(200_000, p), rng.random(200_000))
    expected = stats.binom.pmf(np.arange(n + 1), n, p) * draws.size
    observed = np.bincount(draws, minlength=n + 1)
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    obs, exp = obs[exp > 0], exp[exp > 0]
    assert stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-3
    ends = _binomial_by_inversion(n, np.array([0.0, 1.0]), np.array([0.999, 0.001]))
    np.testing.assert_array_equal(ends, [0, n])


def test_within_municipality_randomisation_is_a_uniform_random_subset(sft):
    """Each participant is treated with probability n_treated / n in their municipality
    (partial-sort cut-off of uniform draws), within 4 binomial SEs at every position."""
    layout = build_layout(sft)
    treated = assign_arms(sft, layout, 4000, rng=np.random.default_rng(2)).treated
    n_m = np.asarray(sft.sites.participants)
    share = np.floor(n_m * 0.5 + 0.5)[layout.municipality] / n_m[layout.municipality]
    se = np.sqrt(share * (1 - share) / 4000)
    assert (np.abs(treated.mean(axis=0) - share) < 4 * se).all()
    n_treated = np.floor(n_m * 0.5 + 0.5).astype(int)
    per_muni = np.add.reduceat(treated, layout.cell_start, axis=1)
    np.testing.assert_array_equal(per_muni, np.broadcast_to(n_treated, per_muni.shape))


def test_groups_fill_in_participant_order(sft):
    """Members join groups in order: group slots never decrease along the treated
    participants, so each group is a run of consecutive members of its municipality."""
    d = simulate_trials(sft, 20, seed=6)
    for r in range(d.n_reps):
        assert (np.diff(d.group[r][d.treated[r]]) >= 0).all()


def test_individual_randomisation_structure(sft):
    d = simulate_trials(sft, 50, seed=1)
    g = sft.groups
    assert (d.group[~d.treated] == -1).all() and (d.group[d.treated] >= 0).all()
    for r in range(d.n_reps):
        sizes = np.bincount(d.group[r][d.treated[r]])
        sizes = sizes[sizes > 0]
        assert g.min_size <= sizes.min() and sizes.max() <= g.max_size
        assert len(sizes) == 27
        treated_per_muni = np.bincount(d.site[0], weights=d.treated[r])
        np.testing.assert_array_equal(
            treated_per_muni, np.floor(np.array(sft.sites.participants) / 2 + 0.5)
        )
        # a group never spans municipalities
        for grp in np.unique(d.group[r][d.treated[r]]):
            assert len(np.unique(d.site[0][d.group[r] == grp])) == 1
    assert (d.sessions_attended <= d.sessions_offered).all()
    assert (d.sessions_offered[~d.treated] == 0).all()


def test_group_size_variation_follows_cv():
    d = simulate_trials(scenario("groups.cv_size=0.3"), 200, seed=2)
    cvs = []
    for r in range(d.n_reps):
        sizes = np.bincount(d.group[r][d.treated[r]])
        sizes = sizes[sizes > 0]
        cvs.append(sizes.std() / sizes.mean())
    assert 0.2 < np.mean(cvs) < 0.4  # capping at max_size trims the tail a little


def test_municipality_randomisation_keeps_municipalities_whole():
    d = simulate_trials(scenario("design.randomisation='municipality'"), 40, seed=1)
    for r in range(d.n_reps):
        per_muni = np.bincount(d.site[0], weights=d.treated[r]) / np.bincount(d.site[0])
        assert set(np.unique(per_muni)) <= {0.0, 1.0}
        assert per_muni.sum() == round(9 * 0.5)


def test_stepped_wedge_crosses_over_exactly_once():
    d = simulate_trials(
        scenario("design.randomisation='stepped-wedge'", "design.n_steps=3"), 40, seed=1
    )
    for r in range(d.n_reps):
        for m in range(9):
            in_m = d.site[0] == m
            by_period = [d.treated[r][in_m & (d.period[0] == p)].mean() for p in range(4)]
            assert set(by_period) <= {0.0, 1.0}
            switches = np.diff(by_period)
            assert (switches >= 0).all() and switches.sum() == 1  # control first, then SFT
    # municipalities spread over the steps: each step has 3 municipalities switching
    first_treated = [[int(d.period[0][(d.site[0] == m) & d.treated[0]].min()) for m in range(9)]]
    assert sorted(np.bincount(first_treated[0])[1:]) == [3, 3, 3]


def test_cohorts_are_randomised_whole():
    d = simulate_trials(scenario("design.randomisation='cohort'"), 30, seed=1)
    for r in range(d.n_reps):
        for c in np.unique(d.cluster[r]):
            arm = d.treated[r][d.cluster[r] == c]
            assert arm.all() or not arm.any()
        assert (d.group[r][d.treated[r]] >= 0).all() and (d.group[r][~d.treated[r]] == -1).all()
        # a treated cohort is one treatment group (one would-be group each, DESIGN.md)
        np.testing.assert_array_equal(d.group[r][d.treated[r]], d.cluster[r][d.treated[r]])
        # in each municipality round(n_cohorts / 2) of its cohorts are treated
        for m in np.unique(d.site[0]):
            here = d.site[0] == m
            cohorts = np.unique(d.cluster[r][here])
            treated = np.unique(d.cluster[r][here & d.treated[r]])
            assert len(treated) == np.floor(len(cohorts) * 0.5 + 0.5)


# ---- outcomes on their scales -------------------------------------------------------------


def test_outcomes_stay_on_their_scales(sft):
    d = simulate_trials(sft, 40, seed=4)
    psp, who5, eq5d = (d.outcomes[k][np.isfinite(d.outcomes[k])] for k in ("psp", "who5", "eq5d"))
    assert psp.min() >= 1 and psp.max() <= 100 and np.all(psp == np.round(psp))
    assert who5.min() >= 0 and who5.max() <= 100 and np.all(who5 % 4 == 0)
    assert eq5d.max() <= 1.0
    assert abs(np.mean(d.outcomes["eq5d"][:, :, 0] == 1.0) - 0.20) < 0.02  # ceiling share
    hours = d.outcomes["support_hours"]
    assert np.nanmin(hours) >= 0 and np.all(hours[np.isfinite(hours)] % 1 == 0)
    assert set(np.unique(d.outcomes["employed"][np.isfinite(d.outcomes["employed"])])) <= {0.0, 1.0}
    # marginal means at baseline (no effect yet): within 4 MC SEs of the scenario values
    base = d.outcomes["support_hours"][:, :, 0].ravel()
    assert abs(base.mean() - 20.0) < 4 * base.std() / np.sqrt(base.size)
    emp = d.outcomes["employed"][:, :, 0].ravel()
    assert abs(emp.mean() - 0.08) < 4 * np.sqrt(0.08 * 0.92 / emp.size)


# ---- calibration --------------------------------------------------------------------------------


def test_completion_rate_meets_target_over_2000_reps(sft):
    d = simulate_trials(sft.with_outcomes(["psp"]), 2000, seed=11)
    completion = d.observed[:, :, -1].mean()
    assert abs(completion - 0.49) < 0.02
    # monotone: nobody returns after dropping out
    assert not (d.observed[:, :, 2] & ~d.observed[:, :, 1]).any()


@pytest.mark.parametrize("mechanism", ["MCAR", "MNAR"])
def test_completion_calibrated_for_other_mechanisms(mechanism):
    d = simulate_trials(
        scenario(f"dropout.mechanism='{mechanism}'", "dropout.completion_target=0.7"), 1000, seed=2
    )
    assert abs(d.observed[:, :, -1].mean() - 0.7) < 0.02


def _anova_components(y, group):
    """One-way ANOVA moment estimates (between, within) for one replicate's groups."""
    labels, inverse = np.unique(group, return_inverse=True)
    n_g = np.bincount(inverse)
    means = np.bincount(inverse, weights=y) / n_g
    n, k = len(y), len(labels)
    ssw = np.sum((y - means[inverse]) ** 2)
    ssb = np.sum(n_g * (means - y.mean()) ** 2)
    msw, msb = ssw / (n - k), ssb / (k - 1)
    n0 = (n - np.sum(n_g**2) / n) / (k - 1)
    return (msb - msw) / n0, msw


def test_group_icc_recovered_by_anova_moments():
    icc = 0.10
    s = scenario(*CLEAN, f"groups.icc_group={icc}", "outcomes.psp.effect=0")
    d = simulate_trials(s, 2000, seed=5)
    comps = np.array(
        [
            _anova_components(d.outcomes["psp"][r, d.treated[r], -1], d.group[r, d.treated[r]])
            for r in range(d.n_reps)
        ]
    )
    between, within = comps.mean(axis=0)
    estimate = between / (between + within)
    # Monte Carlo SE of the ratio by the delta method over replicates
    grad = np.array([within, -between]) / (between + within) ** 2
    mcse = np.sqrt(grad @ np.cov(comps.T) @ grad / d.n_reps)
    assert abs(estimate - icc) < 3 * mcse, (estimate, mcse)
    # and the within-group variance is the control-arm variance (sd 13)
    control_var = np.nanvar(d.outcomes["psp"][:, :, -1][~d.treated])
    assert abs(within / control_var - 1) < 0.02


def test_baseline_followup_correlation_recovered():
    rho = 0.6
    d = simulate_trials(scenario(*CLEAN, f"correlation.baseline_followup={rho}"), 2000, seed=6)
    y0 = d.outcomes["psp"][:, :, 0][~d.treated]
    y1 = d.outcomes["psp"][:, :, -1][~d.treated]
    r = np.corrcoef(y0, y1)[0, 1]
    mcse = (1 - rho**2) / np.sqrt(y0.size)  # SE of a Pearson correlation (pooled controls)
    assert abs(r - rho) < 3 * mcse, (r, mcse)


def test_effect_with_no_dose_response_is_the_full_effect():
    s = scenario(*CLEAN, "attendance.dose_response='none'", "outcomes.psp.effect=7")
    d = simulate_trials(s, 1000, seed=8)
    y = d.outcomes["psp"][:, :, -1]
    diff = np.array(
        [y[r, d.treated[r]].mean() - y[r, ~d.treated[r]].mean() for r in range(d.n_reps)]
    )
    assert abs(diff.mean() - 7.0) < 3 * diff.std() / np.sqrt(d.n_reps)


def test_linear_dose_response_scales_effect_by_mean_attendance():
    s = scenario(*CLEAN, "attendance.prognosis_log_odds=0", "outcomes.psp.effect=10")
    d = simulate_trials(s, 1000, seed=9)
    y = d.outcomes["psp"][:, :, -1]
    diff = np.array(
        [y[r, d.treated[r]].mean() - y[r, ~d.treated[r]].mean() for r in range(d.n_reps)]
    )
    assert abs(diff.mean() - 10 * 0.6) < 3 * diff.std() / np.sqrt(d.n_reps)


def test_self_selection_links_attendance_to_prognosis():
    d = simulate_trials(
        scenario(*CLEAN, "attendance.prognosis_log_odds=1.0", "outcomes.psp.effect=0"), 200, seed=3
    )
    frac = (d.sessions_attended / np.maximum(d.sessions_offered, 1))[d.treated]
    y = d.outcomes["psp"][:, :, -1][d.treated]
    assert np.corrcoef(frac, y)[0, 1] > 0.1
    assert abs(frac.mean() - 0.6) < 0.01  # the mean attendance stays at its target


@pytest.mark.parametrize("bias", [5.0, -3.0])
def test_unblinded_assessor_shifts_psp_difference_by_the_bias(bias):
    base = [*CLEAN, "outcomes.psp.effect=7"]
    blind = simulate_trials(scenario(*base), 200, seed=10)
    unblind = simulate_trials(
        scenario(*base, "blinding.assessor_unblinded_prob=1", f"blinding.assessor_bias={bias}"),
        200,
        seed=10,
    )

    def arm_difference(d):
        y = d.outcomes["psp"][:, :, -1]
        return np.array(
            [y[r, d.treated[r]].mean() - y[r, ~d.treated[r]].mean() for r in range(d.n_reps)]
        )

    # common random numbers: the only change is the bias, so the shift is exact
    np.testing.assert_allclose(arm_difference(unblind) - arm_difference(blind), bias, atol=1e-9)
    assert not unblind.assessor_blinded[:, :, 1:].any()


def test_expectancy_bias_on_self_reports_only_in_treated():
    s0 = scenario(*CLEAN, outcomes=("mhrm",))
    s1 = scenario(
        *CLEAN,
        "outcomes.mhrm.expectancy_bias=4",
        "outcomes.mhrm.step=0",
        "outcomes.mhrm.lower=-1000",
        "outcomes.mhrm.upper=1000",
        outcomes=("mhrm",),
    )
    s0 = s0.model_copy(
        update={
            "outcomes": s1.outcomes
            | {"mhrm": s1.outcomes["mhrm"].model_copy(update={"expectancy_bias": 0.0})}
        }
    )
    a, b = simulate_trials(s0, 50, seed=1), simulate_trials(s1, 50, seed=1)
    shift = b.outcomes["mhrm"] - a.outcomes["mhrm"]
    np.testing.assert_allclose(shift[:, :, 1:][b.treated], 4.0)
    np.testing.assert_allclose(shift[~b.treated], 0.0)
    np.testing.assert_allclose(shift[:, :, 0], 0.0)


# ---- CLI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_cli_simulate_writes_the_long_table(tmp_path, suffix):
    out = tmp_path / f"sft.{suffix}"
    result = CliRunner().invoke(
        main, ["simulate", str(SFT), "--reps", "2", "--seed", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
    assert len(frame) == 2 * 340 * 3
    expected = [
        "rep",
        "participant",
        "municipality",
        "arm",
        "group",
        "trainer",
        "visit",
        "month",
        "psp",
        "mhrm",
        "who5",
        "eq5d",
        "support_hours",
        "employed",
        "sessions_offered",
        "sessions_attended",
        "assessor_blinded",
    ]
    assert list(frame.columns) == expected
    controls = frame[frame["arm"] == "control"]
    assert controls["group"].isna().all()
    assert frame.loc[frame["visit"] > 0, "psp"].isna().any()  # dropout leaves empty cells
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
