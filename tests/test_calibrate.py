"""`trialsim calibrate`: each estimator against an oracle, then a round trip through the simulator.

Round trip: a scenario with known parameters and 3 000 participants is simulated once,
calibrated, and every estimate must lie within 4 standard errors of the truth (the SE is the
fit's own, or the stated large-sample SE); with ~20 checks at 4 SE a false failure has
probability < 0.2 %, and the seed is fixed.
"""

import math
import tomllib
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import optimize, special, stats

from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.reml import cluster_stats, fit_reml
from trialsim.calibrate import calibrate_trial, write_scenario
from trialsim.calibrate.attendance import beta_binomial_loglik, fit_beta_binomial
from trialsim.calibrate.correlation import mar_correlation
from trialsim.calibrate.dropout import fit_logistic
from trialsim.calibrate.estimate import censored_normal_fit
from trialsim.calibrate.icc import icc_posterior, restricted_loglik
from trialsim.cli import main
from trialsim.scenario import BoundedOutcome, apply_overrides, load_scenario, scenario_from_dict
from trialsim.simulate import simulate_trials

from .conftest import ROOT, SFT, scenario

EXAMPLE = ROOT / "scenarios" / "data" / "sft-example.csv"
EXAMPLE_MAP = (
    "participant=deltager,municipality=kommune,arm=gruppe,group=hold,trainer=træner,"
    "sessions_offered=tilbudt,sessions_attended=fremmøde"
)

# ---- estimators against oracles ---------------------------------------------------------


@pytest.fixture(scope="module")
def sft_trial():
    return simulate_trials(scenario("groups.icc_group=0.1"), [3], seed=21)


def test_restricted_likelihood_matches_the_reml_engine(sft_trial):
    """Oracle: fit_reml (itself checked against lme4/statsmodels in test_reml.py). At the
    REML ratio the log-likelihood, the effect and its variance agree; it is the maximum."""
    a = ancova_arrays(sft_trial, "psp")
    fit = fit_reml(a.y, a.X, a.group, a.mask)
    stats_ = cluster_stats(a.y, a.X, a.group, a.mask)
    lam = float(fit.ratio[0])
    assert lam > 0  # an interior fit, so the maximum is a stationary point
    ll, beta, var = restricted_loglik(stats_, np.array([lam, lam * 0.99, lam * 1.01]))
    np.testing.assert_allclose(ll[0], fit.reml_loglik[0], rtol=1e-10)
    assert ll[0] >= ll[1:].max()
    np.testing.assert_allclose(beta[0], fit.beta[0, 1], rtol=1e-9)
    resid_df = stats_.n_obs[0] - a.X.shape[-1]
    # t posterior variance = scale^2 df/(df-2), scale^2 = REML covariance
    np.testing.assert_allclose(var[0] * (resid_df - 2) / resid_df, fit.cov_beta[0, 1, 1], rtol=1e-8)


def test_icc_posterior_mode_is_the_reml_icc(sft_trial):
    """With c = 1 the flat-prior mode on the ICC grid is the REML ICC (to the grid step)."""
    a = ancova_arrays(sft_trial, "psp")
    fit = fit_reml(a.y, a.X, a.group, a.mask)
    post = icc_posterior(cluster_stats(a.y, a.X, a.group, a.mask))
    lam = float(fit.ratio[0])
    step = post.icc_grid[1] - post.icc_grid[0]
    assert abs(post.mode - lam / (1 + lam)) <= step
    np.testing.assert_allclose(post.weights.sum(), 1.0)
    a_, b_ = post.beta_params()
    np.testing.assert_allclose(a_ / (a_ + b_), post.mean, rtol=1e-12)


def test_icc_prior_reweights_the_likelihood_by_the_beta_density(sft_trial):
    """Posterior with a Beta(a, b) prior = flat-prior posterior x scipy's beta pdf, renormed."""
    a = ancova_arrays(sft_trial, "psp")
    st = cluster_stats(a.y, a.X, a.group, a.mask)
    flat = icc_posterior(st, variance_factor=0.64)
    lit = icc_posterior(st, variance_factor=0.64, prior=(1.5, 20.0))
    expected = flat.weights * stats.beta.pdf(flat.icc_grid, 1.5, 20.0)
    np.testing.assert_allclose(lit.weights, expected / expected.sum(), atol=1e-12)
    assert lit.mean < flat.mean  # the published range (mean 0.07) pulls a vague posterior down


def test_beta_binomial_likelihood_and_mle_against_scipy():
    rng = np.random.default_rng(4)
    offered = rng.choice([30, 36], size=1500)
    attended = stats.betabinom.rvs(offered, 0.6 * 3, 0.4 * 3, random_state=rng)
    # likelihood: scipy.stats.betabinom is the oracle
    expected = stats.betabinom.logpmf(attended, offered, 1.2, 2.1).sum()
    np.testing.assert_allclose(beta_binomial_loglik(1.2 / 3.3, 3.3, attended, offered), expected)
    fit = fit_beta_binomial(attended, offered)

    # MLE: an independent optimisation of scipy's logpmf in (log a, log b)
    def nll(t):
        return -stats.betabinom.logpmf(attended, offered, *np.exp(t)).sum()

    ref = optimize.minimize(
        nll, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}
    )
    a, b = np.exp(ref.x)
    np.testing.assert_allclose(fit.mean, a / (a + b), atol=1e-5)
    np.testing.assert_allclose(fit.precision, a + b, rtol=1e-4)
    # recovery within 4 SE of the truth
    assert abs(fit.mean - 0.6) < 4 * fit.se_mean
    assert abs(math.log(fit.precision) - math.log(3.0)) < 4 * fit.se_log_precision


def test_logistic_fit_matches_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(8)
    X = np.column_stack([np.ones(800), rng.integers(0, 2, 800), rng.standard_normal(800)])
    y = (rng.random(800) < special.expit(X @ [-1.0, 0.5, 0.8])).astype(float)
    beta, se = fit_logistic(X, y)
    ref = sm.Logit(y, X).fit(disp=0)
    np.testing.assert_allclose(beta, ref.params, rtol=1e-8)
    np.testing.assert_allclose(se, ref.bse, rtol=1e-6)


def test_mar_correlation_removes_the_dropout_bias():
    """Bivariate normal, r = 0.6, later value missing with probability expit(-0.5 - 1.5 x):
    complete pairs understate r; the factored-likelihood ML is within 4 SE of it."""
    rng = np.random.default_rng(9)
    n, r = 20_000, 0.6
    x = rng.standard_normal(n)
    y = r * x + math.sqrt(1 - r**2) * rng.standard_normal(n)
    y[rng.random(n) < special.expit(-0.5 - 1.5 * x)] = np.nan
    strata = rng.integers(0, 5, n)
    r_ml, n_pairs = mar_correlation(x, y, strata)
    pair = np.isfinite(y)
    r_cc = np.corrcoef(x[pair], y[pair])[0, 1]
    se = (1 - r**2) / math.sqrt(n_pairs)
    assert r - r_cc > 5 * se  # the naive estimate is clearly biased (0.05 here)
    assert abs(r_ml - r) < 4 * se


def test_censored_normal_fit_recovers_the_sd_under_a_ceiling():
    """EQ-5D-like: N(0.75, 0.30) clipped at 1 (20 % at the ceiling)."""
    rng = np.random.default_rng(10)
    o = BoundedOutcome(type="bounded", mean=0.75, sd=0.3, lower=-0.624, upper=1.0, step=0)
    x = np.clip(rng.normal(0.75, 0.3, 4000), o.lower, o.upper)
    mean, sd, share = censored_normal_fit(x, o)
    assert 0.17 < share < 0.23
    assert np.std(x) < 0.27  # the plain SD is too small
    se_sd = 0.3 / math.sqrt(2 * 4000 * 0.8)  # information lost to censoring, roughly
    assert abs(sd - 0.3) < 4 * se_sd
    assert abs(mean - 0.75) < 4 * 0.3 / math.sqrt(4000 * 0.8)


# ---- round trip -------------------------------------------------------------------------

TRUTH = {
    "icc_group": 0.1,
    "icc_municipality": 0.03,
    "effect": 5.0,
    "mean": 50.0,
    "sd": 13.0,
    "baseline_followup": 0.6,
    "between_followups": 0.75,
    "between_outcomes": 0.4,
    "attendance_mean": 0.6,
    "attendance_precision": 3.0,
    "completion": 0.7,
    "treated_log_odds": 0.3,
    "baseline_log_odds": 0.4,
    "attendance_log_odds": 1.0,
}


def known_scenario():
    """SFT with 30 municipalities x 100 participants and the parameters in TRUTH.

    ITT = full effect (dose_response none), attendance exactly beta-binomial (no
    self-selection), no rater biases, MAR dropout."""
    raw = tomllib.loads(SFT.read_text(encoding="utf-8"))
    raw["sites"] = {"participants": [100] * 30}
    t = TRUTH
    raw = apply_overrides(
        raw,
        [
            f"groups.icc_group={t['icc_group']}",
            "groups.icc_trainer=0",
            f"groups.icc_municipality={t['icc_municipality']}",
            "attendance.dose_response='none'",
            "attendance.prognosis_log_odds=0",
            f"attendance.mean_fraction={t['attendance_mean']}",
            f"attendance.precision={t['attendance_precision']}",
            "blinding.assessor_unblinded_prob=0",
            f"outcomes.psp.effect={t['effect']}",
            "outcomes.mhrm.expectancy_bias=0",
            f"dropout.completion_target={t['completion']}",
            f"dropout.treated_log_odds={t['treated_log_odds']}",
            f"dropout.baseline_log_odds={t['baseline_log_odds']}",
            f"dropout.attendance_log_odds={t['attendance_log_odds']}",
        ],
    )
    return scenario_from_dict(raw, source="round-trip").with_outcomes(["psp", "mhrm"])


@pytest.fixture(scope="module")
def round_trip():
    s = known_scenario()
    data = simulate_trials(s, [0], seed=7)
    return s, data, calibrate_trial(data, template=s, name="round-trip")


def test_round_trip_outcome_scale_and_correlations(round_trip):
    s, data, cal = round_trip
    t, n = TRUTH, data.n_participants
    psp = cal.raw["outcomes"]["psp"]
    # the mean carries the municipality effects: var = sd^2 (1/n + icc_m / 30)
    assert abs(psp["mean"] - t["mean"]) < 4 * t["sd"] * math.sqrt(
        1 / n + t["icc_municipality"] / 30
    )
    assert abs(psp["sd"] - t["sd"]) < 4 * t["sd"] / math.sqrt(2 * n) * 1.5  # 1.5: clustering
    r = cal.correlations
    n_pairs = int(np.isfinite(data.outcomes["psp"][0][~data.treated[0], -1]).sum())
    for key in ("baseline_followup", "between_followups"):
        se = (1 - t[key] ** 2) / math.sqrt(n_pairs)  # large-sample SE of r
        assert abs(r[key] - t[key]) < 4 * se, key
    assert abs(r["between_outcomes"] - t["between_outcomes"]) < 4 * (1 - 0.16) / math.sqrt(n)


def test_round_trip_icc_and_effect_posteriors(round_trip):
    _, _, cal = round_trip
    post = cal.icc
    assert post.sd < 0.03 and abs(post.mean - TRUTH["icc_group"]) < 4 * post.sd
    assert abs(cal.raw["groups"]["icc_group"] - TRUTH["icc_group"]) < 4 * post.sd
    assert post.effect_sd < 0.7 and abs(post.effect_mean - TRUTH["effect"]) < 4 * post.effect_sd
    # municipality ICC from 30 municipalities: SE about 0.01
    assert abs(cal.raw["groups"]["icc_municipality"] - TRUTH["icc_municipality"]) < 0.04


def test_round_trip_attendance_and_dropout(round_trip):
    _, data, cal = round_trip
    att, drop = cal.attendance, cal.dropout
    assert abs(att.mean - TRUTH["attendance_mean"]) < 4 * att.se_mean
    assert abs(math.log(att.precision / TRUTH["attendance_precision"])) < 4 * att.se_log_precision
    n = data.n_participants
    c = TRUTH["completion"]
    assert abs(drop.completion_final - c) < 4 * math.sqrt(c * (1 - c) / n)
    for key in ("treated_log_odds", "baseline_log_odds", "attendance_log_odds"):
        se = drop.se[key.removesuffix("_log_odds")]
        assert abs(getattr(drop, key) - TRUTH[key]) < 4 * se, key
    # group sizes: round(50 / 6.3) = 8 groups of 50 treated per municipality
    assert cal.raw["groups"]["mean_size"] == pytest.approx(50 / 8, abs=0.01)


def test_round_trip_file_loads_and_carries_design_priors(round_trip, tmp_path):
    s, _, cal = round_trip
    path = write_scenario(
        cal, tmp_path / "rt.toml", source="sim", date="2026-11-22", template_path="x"
    )
    loaded = load_scenario(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Calibrated by `trialsim calibrate` from sim on 2026-11-22, n=3000")
    assert loaded.groups.icc_group == pytest.approx(cal.icc.mean, rel=1e-2)
    assert loaded.attendance.dose_response == "none"
    family, params = loaded.design_priors["effect"].split(":")
    mean, sd = map(float, params.split(","))
    assert family == "normal" and mean == pytest.approx(cal.icc.effect_mean, rel=1e-2)
    family, params = loaded.design_priors["icc"].split(":")
    a, b = map(float, params.split(","))
    assert family == "beta" and a / (a + b) == pytest.approx(cal.icc.mean, rel=1e-2)
    assert math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))) == pytest.approx(cal.icc.sd, rel=2e-2)


# ---- the command ------------------------------------------------------------------------


def test_calibrate_command_on_the_example(tmp_path, monkeypatch):
    out = tmp_path / "sft-next.toml"
    args = ["calibrate", str(EXAMPLE), "--out", str(out), "--map", EXAMPLE_MAP, "--format", "json"]
    monkeypatch.chdir(tmp_path)  # the default template is found from any working directory
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    s = load_scenario(out)
    assert s.name == "sft-next" and s.n_participants == 340
    assert s.design.visit_months == (0.0, 9.0, 15.0)  # from the template (no month column)
    assert set(s.design_priors) == {"effect", "icc"}
    validated = CliRunner().invoke(main, ["validate", str(out)])
    assert validated.exit_code == 0, validated.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "exists" in again.output


def test_calibrate_refuses_bad_input(tmp_path):
    out = tmp_path / "x.toml"
    base = ["calibrate", str(EXAMPLE), "--out", str(out), "--map", EXAMPLE_MAP]
    months = CliRunner().invoke(main, [*base, "--visit-months", "0,9"])
    assert months.exit_code == 2 and "--visit-months '0,9': expected" in months.output
    broken = CliRunner().invoke(
        main, ["calibrate", str(ROOT / "tests/data/broken-trial.csv"), "--out", str(out)]
    )
    assert broken.exit_code == 2 and "more problems" in broken.output
    assert not out.exists()
    with pytest.raises(ValueError, match="needs one trial"):
        calibrate_trial(simulate_trials(scenario(), 2, seed=1), template=scenario(), name="x")


# ---- calibration of the ICC posterior (slow) ----------------------------------------------


@pytest.mark.slow
def test_icc_and_effect_intervals_cover_at_sft_size():
    """Over 400 SFT-sized trials (ICC 0.05, ITT effect 5) the 90 % posterior intervals of the
    effect and the ICC cover the truth in 90 % +- 3 MC SE (SE = sqrt(.09/400) = 0.015).

    No self-selection (prognosis_log_odds = 0): with it, attendance-driven dropout makes the
    treated completers better-prognosis people and the complete-case effect is biased (+0.6
    measured), which is the data's problem, not the estimator's. Also shown: the posterior
    mean of the ICC is pulled far above the truth by the uniform prior at this size, while
    the mode (REML) and the posterior mean under the default literature prior are close
    (measured: 0.117, 0.060, 0.063)."""
    s = scenario(
        "attendance.dose_response='none'",
        "attendance.prognosis_log_odds=0",
        "outcomes.psp.effect=5",
        "blinding.assessor_unblinded_prob=0",
        "groups.icc_trainer=0",
    )
    data = simulate_trials(s, 400, seed=33)
    cover_icc, cover_effect, modes, means, means_lit = [], [], [], [], []
    z = stats.norm.ppf(0.95)
    for r in range(data.n_reps):
        p = calibrate_trial(data.take([r]), template=s, name="c", icc_prior=(1.0, 1.0)).icc
        cover_icc.append(p.quantile(0.05) <= 0.05 <= p.quantile(0.95))
        cover_effect.append(abs(p.effect_mean - 5) <= z * p.effect_sd)
        modes.append(p.mode)
        means.append(p.mean)
        lit = p.weights * stats.beta.pdf(p.icc_grid, 1.5, 20.0)  # the default prior
        means_lit.append(lit @ p.icc_grid / lit.sum())
    for cover in (cover_icc, cover_effect):
        assert abs(np.mean(cover) - 0.9) < 3 * 0.015
    assert abs(np.mean(modes) - 0.05) < 0.02  # REML
    assert np.mean(means) > 0.09  # uniform prior: far too high
    assert abs(np.mean(means_lit) - 0.05) < 0.02  # literature prior (the default)


def test_calibrate_needs_groups():
    data = simulate_trials(scenario(), [0], seed=1)
    no_groups = replace(data, group=np.full_like(data.group, -1))
    with pytest.raises(ValueError, match="needs the treatment group"):
        calibrate_trial(no_groups, template=scenario(), name="x")
