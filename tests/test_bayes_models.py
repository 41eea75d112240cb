"""PyMC models, priors from scenarios, diagnostics and the `trialsim bayes` command.

MCMC here is small (one compiled model shared with tests/test_bayes_fast.py when run in one
session); the Student-t and dose-response fits are marked slow.
"""

from __future__ import annotations

import json
import math

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
    args = ["bayes", str(one_trial), "--prior", "sceptical", "--mcid", "7", "--format", "json"]
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
        (["--rope", "2"], "expected L,U"),
        (["--outcome", "who5"], "not a column"),
        (["--model", "cluster", "--method", "exact"], "randomised clusters"),
        (["--residual", "student-t", "--method", "exact"], "--method mcmc"),
        (["--group-prior", "half-cauchy:2"], "half-normal:SCALE"),
    ],
)
def test_cli_bayes_bad_input(one_trial, args, message):
    result = CliRunner().invoke(main, ["bayes", str(one_trial), "--method", "exact", *args])
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
    args = ["bayes", example, *maps, "--method", "exact", "--mcid", "7", "--format", "json"]
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
    s = load_scenario("scenarios/sft-19m.toml", ["outcomes.psp.step=0"]).with_outcomes(["psp"])
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
