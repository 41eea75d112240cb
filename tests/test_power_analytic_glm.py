"""Oracles for trialsim.power.analytic_glm (binary and count outcomes).

Independent implementations, run once in R 4.2 and frozen here (the suite needs no R):

* clusterPower 0.7.0 (github.com/Kenkleinman/clusterPower, commit cfa3a00): the files
  R/cpa.binary.R, R/cpa.count.R and R/cpa.irgtt.binary.R sourced into R (pure R code);
  cpa.binary is Donner & Klar (2000) with Eldridge et al.'s (2006) design effect, cpa.count is
  Hayes & Bennett (1999) for rates, cpa.irgtt.binary the treated-arm design effect;
* swCRTdesign 4.0 (CRAN, by Hughes; R/swPwr.r, R/swDsn.R, R/blkDiag.R,
  R/swCRTdesign-internal.R sourced), the Hussey & Hughes (2007) variance with the binomial
  variance at the mean risk.

clusterPower computes one tail of the power, trialsim both (the wrong-sign tail, below
1e-5 here): hence the 2e-5 tolerance against clusterPower; swCRTdesign includes both tails
and agrees to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from trialsim.power.analytic import power_crt
from trialsim.power.analytic_glm import (
    power_crt_binary,
    power_crt_count,
    power_irgt_binary,
    power_irgt_count,
    power_stepped_wedge_binary,
    power_stepped_wedge_count,
)
from trialsim.power.solve import _FUNCTIONS, SOLVABLE, solve_power


def odds_ratio(p1, p0):
    return float(np.exp(special.logit(p1) - special.logit(p0)))


# --------------------------------------------------------------------------------------------
# cluster-randomised


def test_crt_binary_matches_clusterpower_donner_klar_normal():
    # cpa.binary(nclusters=10, nsubjects=20, CV=0, p1=0.30, p2=0.15, ICC=0.05, tdist=FALSE)
    # -> power 0.743739665973
    got = power_crt_binary(
        odds_ratio(0.30, 0.15), risk_control=0.15, n_clusters=10, cluster_size=20, icc=0.05,
        scale="difference", dist="normal",
    )  # fmt: skip
    assert got == pytest.approx(0.743739665973, abs=2e-5)


def test_crt_binary_matches_clusterpower_with_cluster_size_cv_and_t():
    # cpa.binary(nclusters=10, nsubjects=20, CV=0.5, p1=0.30, p2=0.15, ICC=0.05, tdist=TRUE)
    # -> power 0.643985135421 (t on 2 (k - 1) df, Eldridge's design effect)
    got = power_crt_binary(
        odds_ratio(0.30, 0.15), risk_control=0.15, n_clusters=10, cluster_size=20, icc=0.05,
        cv_cluster_size=0.5, scale="difference", dist="t",
    )  # fmt: skip
    assert got == pytest.approx(0.643985135421, abs=2e-5)


def test_crt_count_matches_clusterpower_hayes_bennett_rates():
    # cpa.count(power=NA, nclusters=12, nsubjects=200, r1=0.04, r2=0.025, CVB=0.25)
    # -> power 0.636619404667 (Hayes & Bennett 1999 eq. 2 solved for power: y = 200
    # person-years per cluster, k = 0.25)
    got = power_crt_count(
        0.025 / 0.04, rate_control=0.04, n_clusters=12, cluster_size=200, cv_between=0.25,
        scale="difference", dist="hayes-bennett",
    )  # fmt: skip
    assert got == pytest.approx(0.636619404667, abs=2e-5)


def test_crt_count_hayes_bennett_cluster_count_round_trips_clusterpower():
    # cpa.count(power=0.8, nclusters=NA, nsubjects=200, r1=0.04, r2=0.025, CVB=0.25)
    # -> nclusters 17.1883102295: power 0.8 lies between 17 and 18 clusters per arm
    kw = dict(rate_control=0.04, cluster_size=200, cv_between=0.25, scale="difference",
              dist="hayes-bennett")  # fmt: skip
    assert (
        power_crt_count(0.625, n_clusters=17, **kw)
        < 0.8
        < power_crt_count(0.625, n_clusters=18, **kw)
    )
    assert power_crt_count(0.625, n_clusters=17.1883102295, **kw) == pytest.approx(0.8, abs=1e-6)


def test_crt_binary_solved_cluster_count_matches_clusterpower():
    # cpa.binary(power=0.8, nsubjects=20, CV=0.5, p1=0.30, p2=0.15, ICC=0.05, tdist=TRUE)
    # -> nclusters 13.9793420285
    got = power_crt_binary(
        odds_ratio(0.30, 0.15), risk_control=0.15, n_clusters=13.9793420285, cluster_size=20,
        icc=0.05, cv_cluster_size=0.5, scale="difference",
    )  # fmt: skip
    assert got == pytest.approx(0.8, abs=2e-5)


def test_crt_difference_scale_equals_the_continuous_formula_with_the_mean_variance():
    # Donner & Klar's Var(p1 - p0) = (p1 q1 + p0 q0) DE / (k m) is power_crt's 2 s_T^2 DE /
    # (k m) with the total variance s_T^2 = (p1 q1 + p0 q0) / 2, i.e. sd^2 = (1 - icc) s_T^2
    p0, icc = 0.2, 0.04
    p1 = special.expit(special.logit(p0) + np.log(2.0))
    got = power_crt_binary(2.0, risk_control=p0, n_clusters=8, cluster_size=30, icc=icc,
                           scale="difference")  # fmt: skip
    total = (p1 * (1 - p1) + p0 * (1 - p0)) / 2
    ref = power_crt(p1 - p0, n_clusters=8, cluster_size=30, icc=icc,
                    sd=np.sqrt((1 - icc) * total))  # fmt: skip
    assert 0.3 < ref < 0.95
    assert got == pytest.approx(ref, abs=1e-12)


def test_log_scale_without_clustering_is_the_wald_test_of_the_log_odds_ratio():
    # icc = 0, clusters of one: Var(log OR) = 1/(n p1 q1) + 1/(n p0 q0) (Woolf), normal test
    p0, p1, n = 0.2, 0.35, 150
    se = np.sqrt(1 / (n * p1 * (1 - p1)) + 1 / (n * p0 * (1 - p0)))
    z = np.log(odds_ratio(p1, p0)) / se
    ref = stats.norm.sf(1.959963984540054 - z) + stats.norm.cdf(-1.959963984540054 - z)
    got = power_crt_binary(odds_ratio(p1, p0), risk_control=p0, n_clusters=n, cluster_size=1,
                           icc=0.0, dist="normal")  # fmt: skip
    assert got == pytest.approx(ref, abs=1e-12)


# --------------------------------------------------------------------------------------------
# partially nested


def test_irgt_binary_matches_clusterpower_irgtt():
    # cpa.irgtt.binary(power=NA, nclusters=10, nsubjects=8, ncontrols=80, ICC=0.05,
    #                  p2=0.45, p1=0.25) -> power 0.697374339425 (p2 treated, normal)
    got = power_irgt_binary(
        odds_ratio(0.45, 0.25), risk_control=0.25, n_groups=10, group_size=8, n_control=80,
        icc=0.05, scale="difference", dist="normal",
    )  # fmt: skip
    assert got == pytest.approx(0.697374339425, abs=2e-5)
    # cpa.irgtt.binary(power=0.8, nclusters=NA, ...) -> nclusters 15.1736023972
    got = power_irgt_binary(
        odds_ratio(0.45, 0.25), risk_control=0.25, n_groups=15.1736023972, group_size=8,
        n_control=80, icc=0.05, scale="difference", dist="normal",
    )  # fmt: skip
    assert got == pytest.approx(0.8, abs=2e-5)


def test_irgt_count_with_singleton_groups_is_the_two_sample_rate_test():
    # groups of one with no ICC: Var(log RR) = 1/(n l1) + 1/(n l0), Poisson, normal
    l0, rr, n = 2.0, 0.8, 120
    z = np.log(rr) / np.sqrt(1 / (n * l0 * rr) + 1 / (n * l0))
    ref = stats.norm.cdf(-1.959963984540054 - z) + stats.norm.sf(1.959963984540054 - z)
    got = power_irgt_count(rr, rate_control=l0, n_groups=n, group_size=1, n_control=n,
                           icc=0.0, dist="normal")  # fmt: skip
    assert got == pytest.approx(ref, abs=1e-12)


def test_irgt_clustering_lowers_power_and_only_in_the_treated_arm():
    kw = dict(risk_control=0.3, n_groups=12, group_size=8, n_control=96)
    p0 = power_irgt_binary(2.0, icc=0.0, **kw)
    p1 = power_irgt_binary(2.0, icc=0.1, **kw)
    assert p1 < p0
    # the same ICC applied to both arms (a CRT of 12 + 12 clusters) costs more
    crt = power_crt_binary(2.0, risk_control=0.3, n_clusters=12, cluster_size=8, icc=0.1)
    assert crt < p1


# --------------------------------------------------------------------------------------------
# stepped wedge


def test_stepped_wedge_binary_reproduces_hussey_hughes_example_via_swcrtdesign():
    # Hussey & Hughes (2007) example: 24 clusters in 4 steps, 120 per cluster-period,
    # risks 0.05 -> 0.035, tau = 0.01 (cv_between 0.2 of the control risk).
    # swPwr(swDsn(c(6,6,6,6)), distn="binomial", n=120, mu0=0.05, mu1=0.035, tau=0.01,
    #       eta=0, rho=0, gamma=0, alpha=0.05) -> 0.786189592503
    got = power_stepped_wedge_binary(
        odds_ratio(0.035, 0.05), risk_control=0.05, n_per_period=120, cv_between=0.2,
        clusters_per_step=6, n_steps=4, scale="difference",
    )  # fmt: skip
    assert got == pytest.approx(0.786189592503, abs=1e-9)


def test_stepped_wedge_binary_with_icc_matches_swcrtdesign():
    # swPwr(swDsn(c(3,3,3)), distn="binomial", n=20, mu0=0.3, mu1=0.2, icc=0.05,
    #       alpha=0.05) -> 0.407020603297
    got = power_stepped_wedge_binary(
        odds_ratio(0.2, 0.3), risk_control=0.3, n_per_period=20, icc=0.05,
        clusters_per_step=3, n_steps=3, scale="difference",
    )  # fmt: skip
    assert got == pytest.approx(0.407020603297, abs=1e-9)


def test_stepped_wedge_count_log_scale_is_the_difference_scale_divided_by_the_mean():
    # on the log scale the variances are divided by mu_bar^2 and the effect is log RR: the
    # noncentrality is |log rr| mu_bar / |l1 - l0| times the difference scale's
    kw = dict(rate_control=1.5, n_per_period=10, icc=0.03, clusters_per_step=2, n_steps=3)
    rr = 0.7
    d = power_stepped_wedge_count(rr, scale="difference", **kw)
    lg = power_stepped_wedge_count(rr, scale="log", **kw)
    z = 1.959963984540054
    ncp_d = stats.norm.ppf(d) + z  # one tail dominates here
    ncp_l = stats.norm.ppf(lg) + z
    mu_bar, diff = 1.5 * (1 + rr) / 2, 1.5 * (1 - rr)
    assert ncp_l / ncp_d == pytest.approx(abs(np.log(rr)) * mu_bar / diff, rel=1e-4)


@pytest.mark.parametrize(
    ("func", "kw", "message"),
    [
        (power_crt_binary, dict(risk_control=1.2, n_clusters=5, cluster_size=10, icc=0.1),
         "risk_control must be in"),
        (power_crt_binary, dict(risk_control=0.2, n_clusters=5, cluster_size=10),
         "exactly one of icc"),
        (power_crt_count, dict(rate_control=1.0, n_clusters=5, cluster_size=10, icc=0.1,
                               scale="ratio"), "scale must be one of"),
        (power_irgt_count, dict(rate_control=1.0, n_groups=5, group_size=10, n_control=1,
                                icc=0.1), "n_control must be in"),
    ],
)  # fmt: skip
def test_bad_input_names_the_argument(func, kw, message):
    with pytest.raises(ValueError, match=message):
        func(1.5, **kw)


# --------------------------------------------------------------------------------------------
# solve_power round trips for every solvable argument of the binary and count formulas

_BASE = {
    "irgt-binary": dict(odds_ratio=2.0, risk_control=0.3, n_groups=10, group_size=8,
                        n_control=60, icc=0.05),
    "irgt-count": dict(rate_ratio=1.3, rate_control=2.0, n_groups=10, group_size=8,
                       n_control=60, cv_between=0.2, overdispersion=0.5),
    "crt-binary": dict(odds_ratio=1.8, risk_control=0.2, n_clusters=10, cluster_size=20,
                       icc=0.05),
    "crt-count": dict(rate_ratio=1.3, rate_control=1.0, n_clusters=10, cluster_size=20,
                      icc=0.05, overdispersion=0.5),
    "stepped_wedge-binary": dict(odds_ratio=1.6, risk_control=0.2, n_per_period=10,
                                 icc=0.05, clusters_per_step=2, n_steps=4),
    "stepped_wedge-count": dict(rate_ratio=1.3, rate_control=1.0, n_per_period=10, icc=0.05,
                                clusters_per_step=2, n_steps=4),
}  # fmt: skip


@pytest.mark.parametrize(("design", "name"), [(d, n) for d in _BASE for n in SOLVABLE[d]])
def test_solve_power_round_trip(design, name):
    f, params = _FUNCTIONS[design], dict(_BASE[design])
    if name == "power":
        assert solve_power(design, **params, power=None) == f(**params)
        return
    if name in ("icc", "alpha", "dropout"):
        params.setdefault(name, {"alpha": 0.05, "dropout": 0.2}.get(name))
        known = params[name]
        solved = solve_power(design, **dict(params, **{name: None}), power=f(**params))
        assert solved == pytest.approx(known, rel=1e-7)
        return
    # counts: a target just above the base design's power (a fixed other arm caps the power)
    target = 0.8 if name in ("odds_ratio", "rate_ratio") else f(**params) + 0.02
    params[name] = None
    solved = solve_power(design, **params, power=target)
    params[name] = solved
    if name in ("odds_ratio", "rate_ratio"):
        assert solved > 1 and f(**params) == pytest.approx(0.8, abs=1e-8)
        return
    assert isinstance(solved, int) and f(**params) >= target
    params[name] = solved - 1
    assert solved <= 2 or f(**params) < target
