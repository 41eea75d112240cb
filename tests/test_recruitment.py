"""Recruitment, group formation and the trial timeline (issue 5).

Oracles: the Erlang distribution of the n-th arrival of a Poisson process (scipy.stats.gamma),
the negative binomial number of referrals per recruit (mean n / p), exact time scaling and
exact group arithmetic in deterministic limits; statistical checks use 3 Monte Carlo SEs.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import optimize, stats

from trialsim.cli import main
from trialsim.scenario import ScenarioError, load_scenario
from trialsim.simulate import simulate_trials
from trialsim.simulate.group_formation import form_groups
from trialsim.simulate.layout import build_layout
from trialsim.simulate.recruitment import (
    ACTIVITIES,
    draw_timeline,
    months_for_cumulative_rate,
    recruits_per_month,
    simulate_recruitment,
)

from .conftest import SFT

REC = "sites.recruitment"
DESIGNS = ("individual", "cohort", "municipality", "stepped-wedge", "waitlist")
# no loss, everyone referred at once, no rate variation: a deterministic limit
INSTANT = (
    f"{REC}.loss_per_month_waiting=0",
    f"{REC}.referrals_per_month=[1e6]",
    f"{REC}.ramp_up_months=0",
    f"{REC}.referral_rate_cv=0",
)
FOUR_SITES = ("sites.participants=[24, 36, 48, 60]", "sites.names=['a', 'b', 'c', 'd']")


def rec_scenario(*overrides):
    return load_scenario(SFT, list(overrides))


# ---- the deterministic limits named in the issue -----------------------------------------------


@pytest.mark.parametrize("design", ["individual", "cohort", "waitlist"])
def test_no_loss_instant_referrals_everyone_randomised_groups_at_min_size(design):
    s = rec_scenario(*INSTANT, *FOUR_SITES, f"design.randomisation='{design}'")
    layout = build_layout(s)
    rng = np.random.default_rng(1)
    t, _ = draw_timeline(s, layout, 64, rng=rng)
    res = simulate_recruitment(s, 64, seed=1)
    start_size = s.sites.recruitment.group_start_size
    np.testing.assert_array_equal(res.randomised, res.recruited)
    np.testing.assert_array_equal(res.recruited, 168)
    assert (res.lost_before_start == 0).all() and (res.groups_cancelled == 0).all()
    # every municipality's treated fill whole groups of exactly the start size, at once
    assert (res.groups_started == 168 // 2 // start_size).all()
    for r in range(t.group.shape[0]):
        sizes = np.bincount(t.group[r][t.group[r] >= 0])
        assert (sizes == start_size).all()
    assert np.nanmax(t.group_start_month) < 1e-3
    np.testing.assert_array_equal(res.started_treatment, 84)


def test_individual_randomisation_needs_twice_the_recruits_per_treated_group():
    ind = simulate_recruitment(rec_scenario(*INSTANT, *FOUR_SITES), 64, seed=2)
    clu = simulate_recruitment(
        rec_scenario(*INSTANT, *FOUR_SITES, "design.randomisation='municipality'"), 64, seed=2
    )
    # exact in the deterministic limit: 2 x 6 recruits per group vs 6
    np.testing.assert_allclose(ind.recruits_per_treated_group, 12.0)
    np.testing.assert_allclose(clu.recruits_per_treated_group, 6.0)
    # and about twice under the calibrated SFT defaults (loss, cancellations, small groups)
    sft_ind = simulate_recruitment(rec_scenario(), 256, seed=2)
    sft_clu = simulate_recruitment(rec_scenario("design.randomisation='municipality'"), 256, seed=2)
    ratio = np.median(sft_ind.recruits_per_treated_group) / np.median(
        sft_clu.recruits_per_treated_group
    )
    assert 1.7 < ratio < 2.3, ratio


def test_doubling_referral_rates_halves_months_to_enrolment():
    rates = np.array(rec_scenario().sites.recruitment.referrals_per_month)

    def months(factor, *extra):
        rate = f"{REC}.referrals_per_month={[round(float(x), 6) for x in rates * factor]}"
        return simulate_recruitment(rec_scenario(rate, *extra), 256, seed=4)

    # without a ramp, time scales exactly with 1 / rate (common random numbers)
    slow, fast = months(1, f"{REC}.ramp_up_months=0"), months(2, f"{REC}.ramp_up_months=0")
    np.testing.assert_allclose(fast.months_to_full_enrolment / slow.months_to_full_enrolment, 0.5)
    # with the 3-month ramp only the part after it halves: roughly half
    ratio = np.median(months(2).months_to_full_enrolment) / np.median(
        months(1).months_to_full_enrolment
    )
    assert 0.5 < ratio < 0.6, ratio


def test_months_to_full_enrolment_follows_the_erlang_distribution():
    """Without ramp or rate variation the n-th recruit of a municipality arrives at a
    Gamma(n, rate) time, and full enrolment is the maximum over municipalities."""
    s = rec_scenario(f"{REC}.ramp_up_months=0", f"{REC}.referral_rate_cv=0")
    res = simulate_recruitment(s, 1024, seed=5)
    rate = recruits_per_month(s.sites.recruitment, "individual", 9)
    n = np.array(s.sites.participants)
    dists = [stats.gamma(a=k, scale=1 / r) for k, r in zip(n, rate, strict=True)]
    by_muni = res.months_to_full_enrolment_by_municipality
    mean, sd = n / rate, np.sqrt(n) / rate
    assert (np.abs(by_muni.mean(axis=0) - mean) < 3 * sd / np.sqrt(res.n_reps)).all()
    median = optimize.brentq(lambda x: np.prod([d.cdf(x) for d in dists]) - 0.5, 1, 200)
    share_below = np.mean(res.months_to_full_enrolment <= median)
    assert abs(share_below - 0.5) < 3 * np.sqrt(0.25 / res.n_reps)


def test_ramp_inverts_the_cumulative_intensity():
    rate, ramp = np.array([2.0]), 3.0
    t = np.linspace(0, 10, 101)
    cumulative = np.where(t <= ramp, rate * t**2 / (2 * ramp), rate * (t - ramp / 2))
    np.testing.assert_allclose(months_for_cumulative_rate(cumulative, rate, ramp), t, atol=1e-12)


def test_referrals_per_recruit_follow_the_negative_binomial():
    s = rec_scenario()
    res = simulate_recruitment(s, 512, seed=6)
    r = s.sites.recruitment
    p_stage = np.array([r.eligible_at_screening, r.eligible_at_assessment, r.consent_individual])
    p = p_stage.prod()
    n = 340
    # referrals = n + NegBin(n, p): mean n / p, variance n (1 - p) / p^2
    mcse = np.sqrt(n * (1 - p)) / p / np.sqrt(res.n_reps)
    assert abs(res.referrals.mean() - n / p) < 3 * mcse
    # the failures split over the stages in proportion to their failure probabilities
    reach = np.array([1.0, p_stage[0], p_stage[0] * p_stage[1]])
    share = reach * (1 - p_stage) / (reach * (1 - p_stage)).sum()
    failures = res.referrals - n
    observed = (
        np.array([res.ineligible_at_screening.sum(), res.ineligible_at_assessment.sum()])
        / failures.sum()
    )
    assert np.abs(observed - share[:2]).max() < 0.01
    hours = res.staff_hours_by_activity
    np.testing.assert_allclose(hours[:, ACTIVITIES.index("screening")], res.referrals * 1.5)
    np.testing.assert_allclose(hours[:, ACTIVITIES.index("assessment")], res.invited * 3.0)
    # consent explained without an individual lottery is higher: fewer referrals needed
    cluster = simulate_recruitment(rec_scenario("design.randomisation='cohort'"), 256, seed=6)
    assert cluster.referrals.mean() < res.referrals.mean() - 30


def test_loss_before_start_grows_with_the_maximum_waiting_time():
    lost = [
        simulate_recruitment(rec_scenario(f"{REC}.max_wait_months={w}"), 512, seed=7)
        for w in (1, 3, 8, 16)
    ]
    for shorter, longer in zip(lost, lost[1:], strict=False):
        diff = longer.lost_before_start - shorter.lost_before_start
        assert diff.mean() > 3 * diff.std() / np.sqrt(len(diff)), diff.mean()
    assert (lost[0].mean_waiting_months < lost[-1].mean_waiting_months).mean() > 0.95


def test_worse_prognosis_is_lost_more_often():
    s = rec_scenario(f"{REC}.loss_per_month_waiting=0.2", f"{REC}.loss_prognosis_log_hazard=1")
    layout = build_layout(s)
    prognosis = np.random.default_rng(0).standard_normal((256, 340))
    t, _ = draw_timeline(s, layout, 256, rng=np.random.default_rng(1), prognosis=prognosis)
    assert prognosis[t.lost].mean() < -0.2 < 0.0 < prognosis[t.treated & (t.group >= 0)].mean()


# ---- group formation rules ------------------------------------------------------------------


def test_group_starts_smaller_after_max_wait_or_is_cancelled():
    join = np.array([[0.0, 1.0, 2.0, 10.0, 11.0, 30.0]])
    never = np.full(join.shape, np.inf)
    fg = form_groups(
        join, np.ones_like(join, bool), never, start_size=4, cancel_below=2, max_wait_months=5
    )
    # the first three wait 5 months and start as a group of 3; the next two start at month 15;
    # the last one is alone at month 35 and is left without a group
    np.testing.assert_array_equal(fg.group[0], [0, 0, 0, 1, 1, -1])
    np.testing.assert_allclose(fg.group_start_month[0, :2], [5.0, 15.0])
    np.testing.assert_allclose(fg.cancel_month[0], [35.0])
    assert fg.not_offered[0, -1] and not fg.lost.any()
    # a loss before the start removes a member
    loss = never.copy()
    loss[0, 1] = 3.0
    fg = form_groups(
        join, np.ones_like(join, bool), loss, start_size=4, cancel_below=2, max_wait_months=5
    )
    assert fg.lost[0, 1] and fg.group[0, 1] == -1 and fg.group_size[0, 0] == 2


def test_members_of_a_cancelled_group_join_the_next():
    join = np.array([[0.0, 6.0, 7.0, 8.0]])
    fg = form_groups(
        join,
        np.ones_like(join, bool),
        np.full(join.shape, np.inf),
        start_size=4,
        cancel_below=2,
        max_wait_months=5,
    )
    # person 0 alone at month 5: cancelled, carried to the next group, which fills at month 8;
    # the wait counts from enrolment
    np.testing.assert_allclose(fg.cancel_month[0], [5.0])
    np.testing.assert_array_equal(fg.group[0], [0, 0, 0, 0])
    np.testing.assert_allclose(fg.start_month[0] - join[0], [8.0, 2.0, 1.0, 0.0])


# ---- reproducibility, all designs, calibration -----------------------------------------------


def test_seeded_and_the_same_in_any_chunking():
    s = rec_scenario()
    whole = simulate_recruitment(s, 300, seed=8)
    parts = [simulate_recruitment(s, range(a, b), seed=8) for a, b in [(0, 100), (100, 300)]]
    single = simulate_recruitment(s, [270], seed=8)
    again = simulate_recruitment(s, 300, seed=8)
    other = simulate_recruitment(s, 300, seed=9)
    for name in ("months_to_full_enrolment", "groups_started", "staff_hours_by_activity"):
        a = getattr(whole, name)
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), a)
        np.testing.assert_array_equal(getattr(single, name)[0], a[270])
        np.testing.assert_array_equal(getattr(again, name), a)
    assert not np.array_equal(other.months_to_full_enrolment, whole.months_to_full_enrolment)


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_gives_a_consistent_summary(design):
    res = simulate_recruitment(rec_scenario(f"design.randomisation='{design}'"), 100, seed=3)
    summary = res.summary()
    for key in (
        "months_to_full_enrolment",
        "groups_started",
        "groups_cancelled",
        "recruited",
        "randomised",
        "lost_before_start",
        "staff_hours",
    ):
        q = summary[key]
        assert set(q) == {"median", "p10", "p90"} and q["p10"] <= q["median"] <= q["p90"]
    assert set(summary["staff_hours_by_activity"]) == set(ACTIVITIES)
    assert (res.randomised <= res.recruited).all() and (res.recruited == 340).all()
    assert (res.groups_started > 0).all()
    np.testing.assert_allclose(res.staff_hours, res.staff_hours_by_activity.sum(axis=1))
    sample = res.sample_at_visit
    assert (np.diff(sample, axis=1) <= 0).all() and (sample[:, 0] == 340).all()
    # the people in groups plus those lost or left without a group are the treated who waited
    assert (res.started_treatment + res.not_offered_group <= res.recruited).all()
    json.dumps(summary)  # plain JSON


def test_calibrated_sft_reproduces_the_seed_status():
    """Seed 000: 27 SFT groups, 340 enrolled, 167 final measurements (scenario comments)."""
    summary = simulate_recruitment(rec_scenario(), 512, seed=20161).summary()
    assert summary["recruited"]["median"] == 340
    assert 26 <= summary["groups_started"]["median"] <= 28
    assert 18 <= summary["months_to_full_enrolment"]["median"] <= 25
    assert abs(summary["sample_at_visit"][-1]["median"] - 167) <= 5
    assert summary["calendar"]["full_enrolment_date"]["median"].startswith("2016")


def test_validation_names_the_recruitment_key():
    with pytest.raises(ScenarioError, match=r"sites.recruitment.cancel_below \(7\) must not"):
        rec_scenario(f"{REC}.cancel_below=7")
    with pytest.raises(ScenarioError, match="referrals_per_month has 2 rates for 9"):
        rec_scenario(f"{REC}.referrals_per_month=[1.0, 2.0]")
    with pytest.raises(ScenarioError, match=r"sites.recruitment.consent_individual: Input"):
        rec_scenario(f"{REC}.consent_individual=1.5")
    with pytest.raises(ScenarioError, match="sites.recruitment.max_wait: unknown key"):
        rec_scenario(f"{REC}.max_wait=3")


# ---- the link into trial data ------------------------------------------------------------------


def _without_recruitment(tmp_path):
    text = SFT.read_text(encoding="utf-8")
    stripped = re.sub(r"\[sites\.recruitment\].*?(?=\n\[groups\])", "", text, flags=re.S)
    path = tmp_path / "no-recruitment.toml"
    path.write_text(stripped, encoding="utf-8")
    return path


def test_trial_without_recruitment_link_is_unchanged(tmp_path):
    plain = load_scenario(_without_recruitment(tmp_path))
    assert plain.sites.recruitment is None
    a = simulate_trials(plain.with_outcomes(["psp"]), 20, seed=3).to_frame()
    b = simulate_trials(rec_scenario().with_outcomes(["psp"]), 20, seed=3).to_frame()
    pd.testing.assert_frame_equal(a, b)


def test_linked_trial_takes_arms_groups_and_waiting_from_recruitment():
    s = rec_scenario(f"{REC}.link_trial=true").with_outcomes(["psp"])
    data = simulate_trials(s, 256, seed=12)
    layout = build_layout(s)
    # the same replicates' recruitment, with the trial's prognosis: same arms and groups count
    res = simulate_recruitment(s, 256, seed=12)
    np.testing.assert_array_equal(data.treated.sum(axis=1), 170)
    groups = np.array([len(np.unique(g[g >= 0])) for g in data.group])
    assert abs(groups.mean() - res.groups_started.mean()) < 1.0
    # controls start at enrolment; lost and ungrouped treated attend nothing
    assert (data.waiting_months[~data.treated] == 0).all()
    assert (data.sessions_attended[data.treated & (data.group < 0)] == 0).all()
    assert data.observed[:, :, -1].mean() == pytest.approx(0.49, abs=0.02)
    assert layout.n_participants == data.n_participants
    frame = simulate_trials(s, 2, seed=12).to_frame()
    assert {"enrolled_month", "waiting_months", "visit_date"} <= set(frame.columns)
    first = frame[(frame.rep == 0) & (frame.participant == 1)]
    assert (np.diff(first["visit_date"].to_numpy()) > np.timedelta64(0, "D")).all()


def test_dropout_rises_with_waiting_when_linked():
    base = [f"{REC}.link_trial=true", "dropout.mechanism='MCAR'", "design.randomisation='cohort'"]
    data = simulate_trials(
        rec_scenario(*base, f"{REC}.dropout_log_odds_per_month_waiting=1.0").with_outcomes(["psp"]),
        256,
        seed=13,
    )
    started = data.waiting_months > 0
    long_wait = data.waiting_months > np.median(data.waiting_months[started])
    assert data.observed[:, :, -1][long_wait].mean() < data.observed[:, :, -1][~long_wait].mean()


# ---- CLI -------------------------------------------------------------------------------------


def test_cli_recruit_json_table_csv_and_plot(tmp_path):
    runner = CliRunner()
    args = ["recruit", str(SFT), "--reps", "40", "--seed", "3"]
    out = runner.invoke(main, [*args, "--format", "json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    for key in ("months_to_full_enrolment", "groups_started", "randomised", "lost_before_start"):
        assert set(summary[key]) == {"median", "p10", "p90"}
    assert (
        summary["provenance"]["seed"] == 3 and len(summary["provenance"]["scenario_sha256"]) == 64
    )
    plot = tmp_path / "timeline.png"
    table = runner.invoke(main, [*args, "--plot", str(plot)])
    assert table.exit_code == 0, table.output
    assert "groups started" in table.output and plot.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    csv = runner.invoke(main, [*args, "--format", "csv"])
    assert csv.exit_code == 0 and len(csv.output.strip().splitlines()) == 41


def test_cli_recruit_bad_input_is_one_line(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["recruit", str(SFT), "--plot", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and ".png" in bad.output
    none = runner.invoke(main, ["recruit", str(_without_recruitment(tmp_path))])
    assert none.exit_code == 2 and "[sites.recruitment]" in none.output
    key = runner.invoke(main, ["recruit", str(SFT), "--set", f"{REC}.group_start_size=12"])
    assert key.exit_code == 2 and "group_start_size (12) must not exceed" in key.output
