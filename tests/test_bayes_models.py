"""PyMC models, priors from scenarios, diagnostics and the `trialsim bayes` command.

MCMC here is small (one compiled model shared with tests/test_bayes_fast.py when run in one
session); the Student-t and dose-response fits are marked slow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trialsim.bayes.analysis import BayesSettings, fit_trial, parse_group_prior
from trialsim.bayes.summary import summarise
from trialsim.cli import main
from trialsim.data import write_table
from trialsim.scenario import ScenarioError, load_scenario
from trialsim.simulate.trial import simulate_trials


@pytest.fixture(scope="module")
def one_trial(tmp_path_factory):
    s = load_scenario("scenarios/sft-19m.toml").with_outcomes(["psp"])
    data = simulate_trials(s, [0], seed=7)
    path = tmp_path_factory.mktemp("data") / "trial.csv"
    write_table(data.to_frame().drop(columns=["rep"]), path)
    return path


def test_settings_from_scenario_read_mcid_direction_and_analysis_priors():
    s = load_scenario("scenarios/sft-19m.toml")
    st = BayesSettings.from_scenario(s, "psp")
    assert st.mcid == 7.0 and st.better == "higher" and st.prior == "weakly-informative"
    assert BayesSettings.from_scenario(s, "who5").mcid == 10.0
    st = BayesSettings.from_scenario(s, "psp", prior="sceptical")
    prior, group = st.priors(13.0)
    assert prior.describe() == "sceptical: normal(mean=0, sd=4.256)"
    assert group.describe() == "half-normal(scale=6.5)"
    s2 = load_scenario(
        "scenarios/sft-19m.toml",
        ["analysis.prior='normal:2,3'", "analysis.group_sd_prior='half-t:3,4'"],
    )
    prior, group = BayesSettings.from_scenario(s2, "psp").priors(13.0)
    assert (prior.mean, prior.sd, group.family, group.nu, group.scale) == (2, 3, "half-t", 3, 4)


@pytest.mark.parametrize(
    "override, key",
    [("analysis.prior='vague'", "analysis.prior"), ("outcomes.psp.mcid=-7", "outcomes.psp.mcid")],
)
def test_bad_scenario_analysis_settings_name_the_key(override, key):
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        load_scenario("scenarios/sft-19m.toml", [override])


def test_group_prior_parsing():
    assert parse_group_prior("half-t:3,2.5", 13).describe() == "half-t(nu=3, scale=2.5)"
    for bad in ("half-cauchy:1", "half-normal:", "half-t:3"):
        with pytest.raises(ValueError, match="half-normal:SCALE"):
            parse_group_prior(bad, 13)


def _idata(diverging: bool, shift_chain: float):
    import arviz as az

    rng = np.random.default_rng(0)
    effect = rng.normal(5, 1, (2, 300))
    effect[1] += shift_chain
    div = np.zeros((2, 300), dtype=bool)
    div[0, :3] = diverging
    return az.from_dict(
        posterior={"effect": effect, "tau": np.abs(rng.normal(2, 1, (2, 300)))},
        sample_stats={"diverging": div},
    )


def test_summary_probabilities_and_clean_diagnostics():
    idata = _idata(False, 0.0)
    s = summarise(idata, mcid=7.0, rope=(-1.0, 1.0))
    draws = idata.posterior["effect"].values.ravel()
    assert s["p_benefit"] == pytest.approx(np.mean(draws > 0))
    assert s["p_beyond_mcid"] == pytest.approx(np.mean(draws > 7))
    assert s["p_in_rope"] == pytest.approx(np.mean(np.abs(draws) <= 1))
    assert s["diagnostics"]["warnings"] == []
    lower = summarise(idata, mcid=7.0, better="lower")
    assert lower["p_benefit"] == pytest.approx(np.mean(draws < 0))


def test_diagnostics_warn_with_a_remedy():
    s = summarise(_idata(True, 3.0))
    text = " ".join(s["diagnostics"]["warnings"])
    assert "3 divergent" in text and "target-accept" in text
    assert "R-hat" in text and "--tune" in text


def test_cli_bayes_exact_matches_mcmc_and_writes_outputs(one_trial, tmp_path):
    args = ["bayes", str(one_trial), "--prior", "sceptical", "--mcid", "7", "--better", "higher"]
    args += ["--format", "json"]
    exact = CliRunner().invoke(main, [*args, "--method", "exact", "--out", str(tmp_path / "e")])
    assert exact.exit_code == 0, exact.output
    e = json.loads(exact.output)
    out = tmp_path / "m"
    mcmc = CliRunner().invoke(
        main, [*args, "--draws", "1000", "--tune", "600", "--rope=-2,2", "--out", str(out)]
    )
    assert mcmc.exit_code == 0, mcmc.output
    m = json.loads(mcmc.output.split("\nwarning")[0])
    assert m["prior_text"] == e["prior_text"] == "sceptical: normal(mean=0, sd=4.256)"
    row_e, row_m = e["parameters"][0], m["parameters"][0]
    ess = row_m["ess_bulk"]
    # NUTS against the exact posterior, within 4 Monte Carlo SEs (SE = sd / sqrt(ESS))
    assert abs(row_m["mean"] - row_e["mean"]) < 4 * row_e["sd"] / math.sqrt(ess)
    p = e["p_beyond_mcid"]
    assert abs(m["p_beyond_mcid"] - p) < max(0.02, 4 * math.sqrt(p * (1 - p) / ess))
    assert {"p_benefit", "p_beyond_mcid", "p_in_rope", "diagnostics", "versions"} <= set(m)
    for name in (
        "summary.json",
        "posterior.nc",
        "posterior_mcid.png",
        "trace.png",
        "prior_posterior.png",
    ):
        assert (out / name).stat().st_size > 0, name
    import arviz as az

    assert "effect" in az.from_netcdf(out / "posterior.nc").posterior


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prior", "sceptical"], "needs a non-zero MCID"),
        (["--mcid", "-7"], "positive number"),
        (["--rope", "2"], "expected LOW,HIGH"),
        (["--outcome", "who5"], "not an outcome of"),
        (["--model", "cluster", "--method", "exact"], "randomised clusters"),
        (["--residual", "student-t", "--method", "exact"], "--method mcmc"),
        (["--group-prior", "half-cauchy:2"], "half-normal:SCALE"),
    ],
)
def test_cli_bayes_bad_input(one_trial, args, message):
    base = ["bayes", str(one_trial), "--method", "exact", "--better", "higher"]
    result = CliRunner().invoke(main, [*base, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_bayes_reads_the_danish_example_through_a_column_map(tmp_path):
    """The example export (wide, ';' and decimal commas, Danish names) gives the same exact
    posterior as the long file read back from it."""
    from trialsim.data import read_trial_data

    maps = [
        "--map",
        "participant=deltager,municipality=kommune,arm=gruppe,group=hold",
        "--map",
        "trainer=træner,sessions_offered=tilbudt,sessions_attended=fremmøde",
    ]
    example = "scenarios/data/sft-example.csv"
    args = ["bayes", example, *maps, "--method", "exact", "--mcid", "7", "--outcome", "psp"]
    args += ["--scenario", "scenarios/sft-19m.toml", "--format", "json"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    via_cli = json.loads(result.output)
    data = read_trial_data(example, [maps[1], maps[3]])
    direct = fit_trial(data, "psp", BayesSettings(mcid=7.0), method="exact")
    assert via_cli["p_beyond_mcid"] == pytest.approx(direct.summary["p_beyond_mcid"], rel=1e-9)
    assert 0.2 < via_cli["p_beyond_mcid"] < 0.5  # effect 6.3 (SD 1.8) against an MCID of 7


@pytest.mark.slow
def test_student_t_and_dose_models_recover_the_simulated_effects():
    """Student-t residuals agree with the Gaussian fit on Gaussian data; the dose model finds
    the positive attendance slope the scenario builds in (linear dose-response plus
    self-selection, so its slope is above the causal one)."""
    gaussian = ["outcomes.psp.step=0", "outcomes.psp.lower=-1000", "outcomes.psp.upper=1000"]
    s = load_scenario("scenarios/sft-19m.toml", gaussian).with_outcomes(["psp"])
    data = simulate_trials(s, [1], seed=2)
    base = BayesSettings(prior="flat", mcid=7.0)
    g = fit_trial(data, "psp", base, draws=1000, tune=1000, seed=1)
    t = fit_trial(
        data,
        "psp",
        BayesSettings(prior="flat", mcid=7.0, residual="student-t"),
        draws=1000,
        tune=1000,
        seed=1,
    )
    eg, et = g.summary["parameters"][0], t.summary["parameters"][0]
    assert abs(eg["mean"] - et["mean"]) < 0.25 * eg["sd"]
    d = fit_trial(
        data, "psp", BayesSettings(prior="flat", model="dose"), draws=1000, tune=1000, seed=1
    )
    slope = next(p for p in d.summary["parameters"] if p["parameter"] == "dose_slope")
    assert slope["mean"] > 0


# ---- likelihood by sufficient statistics and the lean nutpie compiler ------------------------


@pytest.fixture(scope="module")
def sft_inputs():
    from trialsim.analyse.prepare import ancova_arrays
    from trialsim.bayes.fast import ScalePrior
    from trialsim.bayes.models import model_input
    from trialsim.bayes.priors import resolve_prior

    s = load_scenario("scenarios/sft-19m.toml").with_outcomes(["psp"])
    a = ancova_arrays(simulate_trials(s, 2, seed=5), "psp")
    prior = resolve_prior("sceptical", mcid=7.0, scale=13.0)
    return [model_input(a, r) for r in (0, 1)], prior, ScalePrior("half-normal", 6.5)


def _rowwise_loglik(data, point):
    """Independent oracle: sum over complete cases of log N(y_i | mu_i, sigma) (scipy)."""
    from scipy import stats as st

    from trialsim.bayes.models import _row_values

    v = _row_values(data)
    z = point["z"][v["unit"].astype(int)] * v["has_unit"]
    mu = v["X_other"] @ point["beta_other"] + point["effect_z"] * v["treat"]
    mu = mu + np.exp(point["tau_z_log__"]) * z
    keep = v["weight"] > 0
    return st.norm.logpdf(v["y"][keep], mu[keep], np.exp(point["log_sigma"])).sum()


def test_sufficient_statistics_likelihood_equals_the_rowwise_normal_likelihood(sft_inputs):
    from trialsim.bayes.models import build_model

    inputs, prior, group = sft_inputs
    data = inputs[0]
    assert 0 < data.n_used < len(data.y)  # dropouts present: weight-0 rows must not count
    import pytensor

    model = build_model(data, prior=prior, group_prior=group)
    (potential,) = model.replace_rvs_by_values([model["loglik"]])
    fn = pytensor.function(model.value_vars, potential, on_unused_input="ignore")

    def loglik(point):
        return fn(*(point[v.name] for v in model.value_vars))

    rng = np.random.default_rng(11)
    for _ in range(3):
        point = {
            "beta_other": rng.normal(0, 0.3, len(data.columns) - 1),
            "effect_z": rng.normal(0, 0.3),
            "log_sigma": rng.normal(0, 0.2),
            "tau_z_log__": rng.normal(-1, 0.5),
            "z": rng.normal(0, 1, data.n_clusters),
        }
        assert loglik(point) == pytest.approx(_rowwise_loglik(data, point), rel=1e-10)


def _cfunc_logp(fast, x):
    import ctypes

    out, value = np.zeros_like(x), np.zeros(1)
    ptr = ctypes.POINTER(ctypes.c_double)
    code = fast.compiled.compiled_logp_func.ctypes(
        len(x),
        x.ctypes.data_as(ptr),
        out.ctypes.data_as(ptr),
        value.ctypes.data_as(ptr),
        fast.compiled.user_data.ctypes.data_as(ptr),
    )
    return code, value[0], out


def test_fast_compiler_has_the_pymc_log_density_and_gradient_and_swaps_data(sft_inputs):
    """The lean nutpie wrapper against PyMC's own logp/dlogp (PyTensor C backend), for the
    compiled dataset and after ``with_data``; the expansion gives effect = effect_z * SD."""
    import ctypes

    from trialsim.bayes.models import build_model, data_values
    from trialsim.bayes.sampling import compile_fast

    inputs, prior, group = sft_inputs
    fast = compile_fast(build_model(inputs[0], prior=prior, group_prior=group))
    rng = np.random.default_rng(3)
    for data in inputs:
        model = build_model(data, prior=prior, group_prior=group)
        if data is not inputs[0]:
            fast = fast.with_data(**data_values(data, prior, group))
        logp, dlogp = model.compile_logp(), model.compile_dlogp()
        names = [model.rvs_to_values[v].name for v in model.free_RVs]
        start = model.initial_point()
        point = {k: start[k] + rng.normal(0, 0.3, np.shape(start[k])) for k in names}
        x = np.concatenate([np.ravel(point[k]) for k in names])
        code, value, grad = _cfunc_logp(fast, x)
        assert code == 0
        assert value == pytest.approx(logp(point), rel=1e-10)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)
        expanded = np.zeros(fast.compiled.n_expanded)
        ptr = ctypes.POINTER(ctypes.c_double)
        fast.compiled.compiled_expand_func.ctypes(
            len(x),
            len(expanded),
            x.ctypes.data_as(ptr),
            expanded.ctypes.data_as(ptr),
            fast.compiled.user_data.ctypes.data_as(ptr),
        )
        names_all, slices, _ = fast.compiled.shape_info
        effect = expanded[slices[names_all.index("effect")]]
        assert effect[0] == pytest.approx(point["effect_z"] * data.y_scale, rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        fast.with_data(**{**data_values(inputs[0], prior, group), "AWy": np.zeros(2)})


@pytest.mark.slow
def test_fast_compiler_draws_equal_nutpie_compiler_draws(sft_inputs):
    """Same log density and same seed: the lean wrapper and nutpie's own compiler give the
    same chains (nutpie's compiler costs ~14 s of numba compilation, hence slow)."""
    import nutpie

    from trialsim.bayes.models import build_model
    from trialsim.bayes.sampling import compile_fast

    inputs, prior, group = sft_inputs
    model = build_model(inputs[0], prior=prior, group_prior=group)
    a, b = (
        nutpie.sample(c, draws=200, tune=200, chains=2, seed=4, progress_bar=False)
        .posterior["effect"]
        .values
        for c in (compile_fast(model).compiled, nutpie.compile_pymc_model(model))
    )
    np.testing.assert_allclose(a, b, rtol=1e-8)


def _anorexia():
    from trialsim.io import read_trial_data
    from trialsim.io.declare import Declarations

    real = Path(__file__).parent / "data" / "real"
    return read_trial_data(real / "anorexia.csv", declared=Declarations(reference="Cont"))


def test_multi_arm_model_input_puts_the_other_arms_beside_the_effect():
    """Three arms: the design holds both arms (the contrast's arm is the effect, the other
    arm's coefficient is in beta_other at arm_index); covariates (the baseline here) enter as
    columns of the same design."""
    from trialsim.analyse.prepare import ancova_arrays
    from trialsim.bayes.models import model_input

    data = _anorexia().for_contrast("CBT")
    inp = model_input(ancova_arrays(data, "weight"), 0)
    assert inp.columns == ("intercept", "treatment", "arm[FT]", "baseline")
    assert inp.arm_index == (1,) and inp.arm_order == (1, 2)


def test_exact_posterior_per_contrast_of_three_arms_with_flat_prior_is_the_ols_t():
    """With a flat effect prior and no groups, each contrast's exact posterior is the
    Student t of the ANCOVA (R's lm, tests/data/real/oracles.json): mean = estimate,
    sd = SE sqrt(df / (df - 2)) with df = 68."""
    from trialsim.bayes.analysis import fit_contrasts

    out = fit_contrasts(
        _anorexia(), "weight", BayesSettings(prior="flat", better="higher"), method="exact"
    )
    assert list(out.results) == ["CBT - Cont", "FT - Cont"] and out.p_best is None
    real = Path(__file__).parent / "data" / "real"
    terms = json.loads((real / "oracles.json").read_text())["anorexia"]["ancova"]["terms"]
    ols = {
        f"{arm} - Cont": (terms[f"treat{arm}"]["estimate"], terms[f"treat{arm}"]["se"])
        for arm in ("CBT", "FT")
    }  # R: lm(weight_post ~ treat + weight_pre)
    for name, (estimate, se) in ols.items():
        row = out.results[name].summary["parameters"][0]
        assert row["mean"] == pytest.approx(estimate, rel=1e-6)
        assert row["sd"] == pytest.approx(se * np.sqrt(68 / 66), rel=1e-3)


@pytest.mark.slow
def test_joint_mcmc_of_three_arms_agrees_with_the_exact_posterior_and_p_best():
    """NUTS on the joint three-arm model (flat prior) against the exact posterior: each
    contrast's mean within 4 Monte Carlo SEs, and P(each arm is best) against draws of the
    exact joint posterior (multivariate t, 68 df, of the ANCOVA)."""
    from scipy import stats

    from trialsim.analyse.ols import ols_batch
    from trialsim.analyse.prepare import ancova_arrays
    from trialsim.bayes.analysis import fit_contrasts

    data = _anorexia()
    settings = BayesSettings(prior="flat", better="higher")
    mcmc = fit_contrasts(data, "weight", settings, draws=2000, tune=1000, chains=2, seed=3)
    exact = fit_contrasts(data, "weight", settings, method="exact")
    for name in ("CBT - Cont", "FT - Cont"):
        m = mcmc.results[name].summary["parameters"][0]
        e = exact.results[name].summary["parameters"][0]
        assert abs(m["mean"] - e["mean"]) < 4 * e["sd"] / np.sqrt(1000)  # ESS >= 1000
    a = ancova_arrays(data.for_contrast("CBT"), "weight")
    fit = ols_batch(a.y, a.X, a.mask)
    s2 = fit.rss[0] / 68
    joint = stats.multivariate_t(fit.beta[0, 1:3], s2 * fit.bread[0, 1:3, 1:3], df=68)
    d = joint.rvs(200_000, random_state=1)
    best = np.argmax(np.column_stack([np.zeros(len(d)), d]), axis=1)
    expected = [np.mean(best == i) for i in range(3)]
    got = [mcmc.p_best[k] for k in ("Cont", "CBT", "FT")]
    for g, e in zip(got, expected, strict=True):
        assert abs(g - e) < 4 * np.sqrt(e * (1 - e) / 1000) + 1e-3


def test_cli_bayes_three_arms_and_formula(tmp_path):
    """Without --contrast a three-arm trial gives every contrast (exact here: the same
    posteriors as fit_contrasts); --formula fits the formula's design (BtheB's published
    ANCOVA: with a flat prior the posterior mean is lm's estimate)."""
    real = Path(__file__).parent / "data" / "real"
    args = ["bayes", str(real / "anorexia.csv"), "--reference", "Cont", "--better", "higher"]
    result = CliRunner().invoke(
        main, [*args, "--method", "exact", "--format", "json", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out["contrasts"]) == ["CBT - Cont", "FT - Cont"] and out["p_best"] is None
    args = ["bayes", str(real / "btheb.csv"), "--better", "lower", "--prior", "flat"]
    args += ["--formula", "bdi ~ treatment + bdi.pre + drug + length", "--method", "exact"]
    result = CliRunner().invoke(main, [*args, "--format", "json", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["formula"] == "bdi ~ arm + bdi.pre + drug + length"
    lm = json.loads((real / "oracles.json").read_text())["btheb"]["ancova_8m"]["terms"]
    assert out["parameters"][0]["mean"] == pytest.approx(lm["treatmentBtheB"]["estimate"], rel=1e-6)
