"""Normal-normal reanalysis: published worked examples, conjugate algebra, CLI behaviour."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import integrate, stats

from trialsim.bayes.priors import resolve_prior
from trialsim.bayes.reanalysis import reanalyse, se_from_ci
from trialsim.cli import main


def _andromeda_mcid() -> float:
    # The worked example's MCID: the odds ratio of the trial's design assumption (30 % vs
    # 45 % mortality, n = 420) with a 0.5 continuity correction, as written in the thread.
    n = 420
    a, b = 0.3 * n, 0.45 * n
    c, d = n - a, n - b
    return ((a + 0.5) * (d + 0.5)) / ((b + 0.5) * (c + 0.5))


def test_andromeda_shock_sceptical_prior_matches_published_worked_example():
    """ANDROMEDA-SHOCK (Hernández et al. 2019 JAMA 321:654): HR 0.75 (95 % CI 0.55-1.02).

    Worked normal-normal reanalysis with a sceptical prior (mean 0, 5 % beyond the MCID,
    Spiegelhalter et al. 1994) in the datamethods.org thread "ANDROMEDA-SHOCK (or how to
    interpret HR 0.76, 95% CI 0.55-1.02, p=0.06)", post 26: posterior HR 0.78 (95 % CrI
    0.59-1.04), P(HR < 1) = 0.95. That post takes the SE from the upper limit only
    (log(1.02/0.75)/1.96); we pass the same SE, and compare at the published 2 decimals.
    """
    mcid = _andromeda_mcid()
    se = math.log(1.02 / 0.75) / stats.norm.isf(0.025)
    r = reanalyse(0.75, se=se, scale="log", mcid=mcid, prior="sceptical", better="lower")
    out = r.to_dict()
    assert round(out["posterior_median_original"], 2) == 0.78
    assert round(out["ci_low_original"], 2) == 0.59
    assert round(out["ci_high_original"], 2) == 1.04
    assert math.floor(r.p_benefit * 100) / 100 == 0.95  # reported as 0.95 (0.956 here)
    # with the SE from the full CI width the answer moves by less than the published rounding
    r_ci = reanalyse(0.75, ci=(0.55, 1.02), scale="log", mcid=mcid, better="lower")
    assert abs(r_ci.p_benefit - r.p_benefit) < 0.005


def test_eolia_flat_prior_close_to_goligher_minimally_informative():
    """EOLIA (Combes et al. 2018): 60-day deaths 44/124 (ECMO) vs 57/125, RR 0.76 (95 % CI
    0.55-1.04). Goligher et al. 2018 JAMA 320:2251 report P(RR < 1) = 96 % under a minimally
    informative prior with a binomial model. Oracles: that figure (quoted from the abstract)
    and, computed here from the counts, the exact posterior of independent uniform priors on
    the two risks, P(p_ecmo < p_control) = 0.947; the normal approximation on the published
    log RR and CI must agree with both within 0.01."""
    r = reanalyse(0.76, ci=(0.55, 1.04), scale="log", mcid=0.67, prior="flat", better="lower")
    ecmo, control = stats.beta(44 + 1, 124 - 44 + 1), stats.beta(57 + 1, 125 - 57 + 1)
    exact = integrate.quad(lambda x: ecmo.pdf(x) * control.sf(x), 0.0, 1.0)[0]
    assert abs(r.p_benefit - exact) < 0.01
    assert abs(r.p_benefit - 0.96) < 0.01
    # a flat prior returns the likelihood: posterior mean = log estimate, SD = SE
    assert r.posterior_mean == pytest.approx(math.log(0.76))
    assert r.posterior_sd == pytest.approx(se_from_ci(0.55, 1.04, scale="log"))


def test_conjugate_algebra_against_numerical_bayes():
    """Posterior of N(m, s^2) prior x N(theta; est, se^2) likelihood by grid integration."""
    est, se, prior = 5.2, 2.4, resolve_prior("normal:1.5,3")
    r = reanalyse(est, se=se, mcid=7.0, prior=prior)
    x = np.linspace(-30, 40, 200_001)
    dens = stats.norm.pdf(x, prior.mean, prior.sd) * stats.norm.pdf(est, x, se)
    dens /= np.trapezoid(dens, x)
    mean = np.trapezoid(x * dens, x)
    sd = math.sqrt(np.trapezoid((x - mean) ** 2 * dens, x))
    assert r.posterior_mean == pytest.approx(mean, abs=1e-8)
    assert r.posterior_sd == pytest.approx(sd, abs=1e-8)
    assert r.p_benefit == pytest.approx(np.trapezoid(dens * (x > 0), x), abs=1e-4)
    assert r.p_beyond_mcid == pytest.approx(np.trapezoid(dens * (x > 7.0), x), abs=1e-4)


def test_sceptical_and_enthusiastic_priors_have_the_stated_tail():
    s = resolve_prior("sceptical", mcid=7.0)
    e = resolve_prior("enthusiastic", mcid=7.0)
    assert stats.norm.sf(7.0, s.mean, s.sd) == pytest.approx(0.05)
    assert e.mean == 7.0 and e.sd == s.sd
    # for "lower is better" the MCID is negative and the tail is below it
    s_low = resolve_prior("sceptical", mcid=math.log(0.8))
    assert stats.norm.cdf(math.log(0.8), s_low.mean, s_low.sd) == pytest.approx(0.05)


def test_prior_order_of_posterior_probabilities():
    kw = dict(ci=(0.4, 10.0), mcid=7.0)
    p = {name: reanalyse(5.2, prior=name, **kw).p_benefit for name in ("sceptical", "flat")}
    p["enthusiastic"] = reanalyse(5.2, prior="enthusiastic", **kw).p_benefit
    assert p["sceptical"] < p["flat"] < p["enthusiastic"]


def test_cli_json_keys_and_plot(tmp_path):
    plot = tmp_path / "fig.png"
    result = CliRunner().invoke(
        main,
        [
            "reanalyse",
            "--estimate",
            "0.76",
            "--ci",
            "0.55,1.04",
            "--scale",
            "log",
            "--mcid",
            "0.67",
            "--better",
            "lower",
            "--prior",
            "flat",
            "--format",
            "json",
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key in ("posterior_mean", "posterior_sd", "ci_low", "ci_high", "p_benefit"):
        assert math.isfinite(out[key])
    assert out["ci_low_original"] == pytest.approx(math.exp(out["ci_low"]))
    assert out["prior_text"].startswith("flat")
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--estimate", "5", "--mcid", "7"], "exactly one of --ci"),
        (["--estimate", "5", "--se", "2", "--ci", "1,9", "--mcid", "7"], "exactly one"),
        (["--estimate", "5", "--se", "2", "--mcid", "-7"], "side of benefit"),
        (["--estimate", "-1", "--se", "2", "--scale", "log", "--mcid", "2"], "positive"),
        (["--estimate", "5", "--ci", "9,1", "--mcid", "7"], "must exceed"),
        (["--estimate", "5", "--se", "2", "--mcid", "7", "--prior", "normal:0"], "normal:MEAN"),
        (["--estimate", "5", "--se", "2", "--mcid", "7", "--prior", "vague"], "unknown prior"),
        (["--estimate", "5", "--se", "2", "--mcid", "7", "--plot", "x.txt"], "must end"),
    ],
)
def test_cli_bad_input_is_one_line(args, message):
    result = CliRunner().invoke(main, ["reanalyse", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
