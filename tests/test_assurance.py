"""Design priors, decision rules and assurance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from trialsim.bayes.analysis import BayesSettings
from trialsim.bayes.assurance import parse_decision, run_assurance
from trialsim.bayes.distributions import parse_design_prior
from trialsim.cli import main
from trialsim.scenario import load_scenario

SCIPY = {
    "normal:4,2": stats.norm(4, 2),
    "lognormal:0.5,0.3": stats.lognorm(0.3, scale=math.exp(0.5)),
    "beta:2,30": stats.beta(2, 30),
    "gamma:3,2": stats.gamma(3, scale=0.5),  # shape 3, rate 2
    "uniform:-1,3": stats.uniform(-1, 4),
}


@pytest.mark.parametrize("text", list(SCIPY))
def test_design_prior_draws_match_scipy(text):
    """Mean and SD of 200 000 draws within 5 Monte Carlo SEs of scipy's moments."""
    d = parse_design_prior(text)
    ref = SCIPY[text]
    x = d.sample(200_000, rng=np.random.default_rng(1))
    assert d.mean == pytest.approx(ref.mean(), rel=1e-12)
    assert abs(x.mean() - ref.mean()) < 5 * ref.std() / math.sqrt(x.size)
    assert abs(x.std() / ref.std() - 1) < 0.01
    assert d.text == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("normal:4", "takes 2"),
        ("cauchy:0,1", "family one of"),
        ("normal:4,-2", "positive"),
        ("beta:0,3", "positive"),
        ("uniform:3,1", "low < high"),
        ("normal 4,2", "family:params"),
    ],
)
def test_bad_design_priors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_design_prior(text)


def test_decision_rules():
    d = parse_decision("p_benefit>0.95 and p_beyond_mcid>=0.5")
    q = {"p_benefit": np.array([0.99, 0.99, 0.5]), "p_beyond_mcid": np.array([0.5, 0.4, 0.9])}
    assert d(q).tolist() == [True, False, False]
    assert d.text == "p_benefit>0.95 and p_beyond_mcid>=0.5"
    for bad in ("p_benefit=0.9", "power>0.8", "p_benefit>high"):
        with pytest.raises(ValueError, match="QUANTITY"):
            parse_decision(bad)


@pytest.fixture(scope="module")
def clean_scenario():
    # no assessor bias, no expectancy bias, MCAR dropout: the analysis model is then unbiased
    return load_scenario(
        "scenarios/sft-19m.toml",
        ["blinding.assessor_unblinded_prob=0", "dropout.mechanism='MCAR'"],
    ).with_outcomes(["psp"])


def test_null_operating_characteristic_matches_one_sided_alpha(clean_scenario):
    """With a flat analysis prior the posterior P(effect > 0) is close to one minus the
    one-sided p-value, so the rule P(benefit) > 0.975 has a type-I error near 0.025.

    1024 null trials: MCSE 0.005; the group-SD prior makes the Bayesian rule slightly
    different from a t test, so we allow 0.025 +- 0.015 (3 MCSE)."""
    settings = BayesSettings(prior="flat", mcid=7.0)
    r = run_assurance(
        clean_scenario,
        "psp",
        {"effect": parse_design_prior("fixed:7")},
        parse_decision("p_benefit>0.975"),
        settings,
        n_draws=4,
        reps_per_draw=256,
        seed=5,
    )
    assert abs(r.p_success_null - 0.025) < 0.015
    # at the MCID (ITT effect 7 PSP points) the same rule succeeds far more often
    assert r.p_success_mcid > 0.5
    # a fixed design prior at the scenario's ITT effect 7 / dose is between the two
    assert r.p_success_null < r.assurance < 1.0
    assert r.failed == 0


def test_fixed_zero_design_prior_equals_null_and_is_reproducible(clean_scenario):
    settings = BayesSettings(prior="sceptical", mcid=7.0)
    kw = dict(n_draws=3, reps_per_draw=32, seed=9)
    rule = parse_decision("p_beyond_mcid>0.3")
    a = run_assurance(
        clean_scenario,
        "psp",
        {"effect": parse_design_prior("fixed:0")},
        rule,
        settings,
        workers=1,
        **kw,
    )
    b = run_assurance(
        clean_scenario,
        "psp",
        {"effect": parse_design_prior("fixed:0")},
        rule,
        settings,
        workers=2,
        **kw,
    )
    assert a.assurance == a.p_success_null  # same trials: identical, not just close
    assert a.as_dict() == b.as_dict()  # the number of workers does not matter


def test_assurance_grows_with_the_design_prior_mean(clean_scenario):
    settings = BayesSettings(prior="weakly-informative")  # no MCID: no run at the MCID
    rule = parse_decision("p_benefit>0.9")
    values = [
        run_assurance(
            clean_scenario,
            "psp",
            {"effect": parse_design_prior(f"normal:{m},2"), "icc": parse_design_prior("beta:2,30")},
            rule,
            settings,
            n_draws=3,
            reps_per_draw=16,
            seed=3,
        ).assurance
        for m in (0, 12)
    ]
    assert values[0] < values[1]


def test_cli_assurance_json(tmp_path):
    out = tmp_path / "a"
    result = CliRunner().invoke(
        main,
        [
            "assurance",
            "scenarios/sft-19m.toml",
            "--design-prior",
            "effect=normal:7,3",
            "--design-prior",
            "icc=beta:2,30",
            "--decision",
            "p_beyond_mcid>0.5",
            "--reps",
            "40",
            "--per-draw",
            "20",
            "--format",
            "json",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["design_priors"] == {"effect": "normal:7,3", "icc": "beta:2,30"}
    assert 0 <= record["assurance"] <= 1 and record["n_draws"] == 2
    assert record["prior_text"].startswith("weakly-informative")
    assert (
        json.loads((out / "assurance.json").read_text())["scenario_sha256"]
        == record["scenario_sha256"]
    )
    assert {p.name for p in out.iterdir()} == {
        "assurance.json",
        "assurance.csv",
        "assurance-draws.csv",
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--design-prior", "effect=normal:7"], "takes 2"),
        (["--design-prior", "effect"], "KEY=FAMILY"),
        (["--design-prior", "effect=normal:7,3", "--decision", "power>0.8"], "QUANTITY"),
        (["--design-prior", "effect=normal:7,3", "--outcome", "employed"], "binary outcome"),
    ],
)
def test_cli_assurance_bad_input(args, message):
    result = CliRunner().invoke(main, ["assurance", "scenarios/sft-19m.toml", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_mcmc_check_agrees_with_the_exact_posterior(clean_scenario):
    """Two trials re-analysed by NUTS (1000 draws: MCSE of a probability <= 0.016)."""
    settings = BayesSettings(prior="sceptical", mcid=7.0)
    r = run_assurance(
        clean_scenario,
        "psp",
        {"effect": parse_design_prior("normal:7,2")},
        parse_decision("p_benefit>0.9"),
        settings,
        n_draws=2,
        reps_per_draw=4,
        seed=11,
        check_mcmc=2,
    )
    check = r.mcmc_check
    assert check["trials"] == 2
    assert check["max_abs_difference"]["p_benefit"] < 0.05
    assert check["max_abs_difference"]["p_beyond_mcid"] < 0.05
