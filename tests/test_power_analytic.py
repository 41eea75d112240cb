"""Oracles for trialsim.power.analytic and trialsim.power.solve.

Every expected number names its source: a published value, an independent implementation
(statsmodels, direct GLS with numpy) or a seeded Monte Carlo with a tolerance in Monte Carlo
standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats
from statsmodels.stats.power import TTestIndPower, ttest_power

from trialsim.power.analytic import (
    design_effect,
    power_crt,
    power_irgt,
    power_stepped_wedge,
    stepped_wedge_design,
    stepped_wedge_variance,
)
from trialsim.power.solve import SOLVABLE, solve_power

# --------------------------------------------------------------------------------------------
# non-clustered limits against statsmodels' two-sample t test


@pytest.mark.parametrize(("effect", "n"), [(0.5, 30), (0.2, 200), (0.8, 10), (1.5, 4)])
def test_irgt_without_clustering_is_the_two_sample_t_test(effect, n):
    # icc=0, group_size=1 and n_groups == n_control: the Satterthwaite df equals the pooled
    # df 2n - 2 exactly, so the brief's 1e-3 tolerance is met to rounding error (~1e-15).
    expected = TTestIndPower().power(effect, nobs1=n, alpha=0.05, ratio=1.0)
    got = power_irgt(effect, n_groups=n, group_size=1, n_control=n, icc=0.0)
    assert abs(got - expected) < 1e-9


def test_irgt_unequal_arms_use_welch_df_not_pooled_df():
    # With unequal arms the IRGT test is Welch's: same noncentrality as the pooled test but
    # Satterthwaite df instead of n1 + n2 - 2. Oracle: scipy's noncentral t with that df.
    n1, n2, d = 15, 45, 0.7
    v1, v2 = 1 / n1, 1 / n2
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    ncp = d / np.sqrt(v1 + v2)
    crit = stats.t.isf(0.025, df)
    expected = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)
    got = power_irgt(d, n_groups=n1, group_size=1, n_control=n2, icc=0.0)
    assert abs(got - expected) < 1e-9
    # pooled-df statsmodels (df 58, equal-variance SE) differs: measured 0.6364 vs 0.6154
    pooled = TTestIndPower().power(d, nobs1=n1, alpha=0.05, ratio=n2 / n1)
    assert 0 < pooled - got < 0.03


@pytest.mark.parametrize(("effect", "k"), [(0.5, 30), (0.3, 100), (1.0, 8)])
def test_crt_with_singleton_clusters_is_the_two_sample_t_test(effect, k):
    expected = TTestIndPower().power(effect, nobs1=k, alpha=0.05, ratio=1.0)
    got = power_crt(effect, n_clusters=k, cluster_size=1, icc=0.0)
    assert abs(got - expected) < 1e-9


@pytest.mark.parametrize(("effect", "k", "ratio"), [(0.5, 4, 1.25), (0.3, 40, 2.0), (1.0, 6, 0.5)])
def test_crt_unequal_arms_with_singleton_clusters_is_the_two_sample_t_test(effect, k, ratio):
    # k treated and ratio * k control clusters of one: the pooled two-sample t test with
    # nobs1 = k and statsmodels' ratio = nobs2 / nobs1
    expected = TTestIndPower().power(effect, nobs1=k, alpha=0.05, ratio=ratio)
    got = power_crt(effect, n_clusters=k, cluster_size=1, icc=0.0, cluster_ratio=ratio)
    assert abs(got - expected) < 1e-9


def test_crt_solve_keeps_the_cluster_ratio():
    kw = dict(effect=0.4, cluster_size=20, icc=0.05, cluster_ratio=1.5)
    k = solve_power("crt", n_clusters=None, power=0.8, **kw)
    assert power_crt(n_clusters=k, **kw) >= 0.8 > power_crt(n_clusters=k - 1, **kw)


# --------------------------------------------------------------------------------------------
# cluster-randomised trial


def test_crt_reproduces_clusterpower_documented_example():
    # clusterPower (R) ?crtpwr.2mean example: crtpwr.2mean(n=10, d=1, icc=.1, varw=5) -- "The
    # result, showing m of greater than 15, suggests 16 clusters per condition should be used."
    # crtpwr.2mean uses varw as the total variance in its noncentrality, so our within-cluster
    # sd is sqrt(5 * (1 - 0.1)); it omits the opposite tail (here < 1e-6, immaterial).
    sd = np.sqrt(5 * (1 - 0.1))
    k = solve_power("crt", effect=1.0, n_clusters=None, cluster_size=10, icc=0.1, sd=sd, power=0.8)
    assert k == 16
    assert power_crt(1.0, n_clusters=15, cluster_size=10, icc=0.1, sd=sd) < 0.8


def test_eldridge_design_effect_is_exact_variance_of_size_weighted_mean():
    # Independent derivation: for clusters of sizes m_i the size-weighted mean has variance
    # (sigma_g^2 sum m_i^2 + sigma_e^2 sum m_i) / (sum m_i)^2, computed here from drawn sizes;
    # Eldridge et al. (2006) eq. for DE with the population CV of those sizes must equal it.
    rng = np.random.default_rng(20240601)
    sizes = rng.integers(3, 60, size=25).astype(float)
    icc, sigma_e2 = 0.07, 2.0
    sigma_g2 = icc / (1 - icc) * sigma_e2
    exact = (sigma_g2 * np.sum(sizes**2) + sigma_e2 * np.sum(sizes)) / np.sum(sizes) ** 2
    m_bar, cv = sizes.mean(), sizes.std() / sizes.mean()
    via_de = (sigma_g2 + sigma_e2) * design_effect(m_bar, icc, cv) / (sizes.size * m_bar)
    assert via_de == pytest.approx(exact, rel=1e-12)


def test_crt_variable_cluster_size_matches_statsmodels_on_effective_n():
    # Independent implementation: statsmodels' ttest_power with nobs = k m / (2 DE) per unit of
    # standardised (total-SD) effect and df = 2k - 2 - covariates.
    k, m, icc, cv, d, sd = 12, 25, 0.04, 0.65, 0.35, 1.3
    sd_total = sd / np.sqrt(1 - icc)
    de = 1 + ((cv**2 + 1) * m - 1) * icc
    expected = ttest_power(d / sd_total, nobs=k * m / (2 * de), alpha=0.05, df=2 * k - 3)
    got = power_crt(
        d, n_clusters=k, cluster_size=m, icc=icc, sd=sd, cv_cluster_size=cv, n_covariates=1
    )
    assert abs(got - expected) < 1e-10


# --------------------------------------------------------------------------------------------
# stepped wedge


def _swcrt_example1():
    # swCRTdesign (R) README and ?swPwr Example 1: swPwr(swDsn(c(6,6,6,6)), distn="binomial",
    # n=120, mu0=0.05, mu1=0.035, tau=0.01, eta=0, rho=0, gamma=0, alpha=0.05) -> 0.7861896.
    # Binomial: sigma^2 = mubar (1 - mubar), mubar = (mu0 + mu1) / 2.
    mubar = (0.05 + 0.035) / 2
    sigma2, tau2 = mubar * (1 - mubar), 0.01**2
    return stepped_wedge_design([6, 6, 6, 6]), sigma2, tau2


def test_stepped_wedge_reproduces_swcrtdesign_example():
    x, sigma2, tau2 = _swcrt_example1()
    assert x.shape == (24, 5)
    got = power_stepped_wedge(
        0.035 - 0.05,
        n_per_period=120,
        treatment_matrix=x,
        sd=np.sqrt(sigma2),
        icc=tau2 / (tau2 + sigma2),
    )
    # published to 7 decimals; measured |diff| ~ 4e-9
    assert abs(got - 0.7861896) < 5e-8


def _gls_variance(x, sigma2, tau2):
    """Var(theta-hat) from (X' V^-1 X)^-1 for the Hussey-Hughes model on cluster-period means."""
    n_clusters, n_periods = x.shape
    period = np.eye(n_periods)[:, 1:]  # fixed period effects, period 1 is the reference
    rows = [np.column_stack([np.ones(n_periods), period, x[i]]) for i in range(n_clusters)]
    design = np.vstack(rows)
    block = sigma2 * np.eye(n_periods) + tau2 * np.ones((n_periods, n_periods))
    v_inv = np.kron(np.eye(n_clusters), np.linalg.inv(block))
    info = design.T @ v_inv @ design
    return np.linalg.inv(info)[-1, -1]


@pytest.mark.parametrize(
    "x",
    [
        stepped_wedge_design([6, 6, 6, 6]),
        stepped_wedge_design([3, 5, 2, 4]),
        # irregular: incomplete/with reversals and a never-treated cluster
        np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]]),
    ],
)
@pytest.mark.parametrize(("sigma2", "tau2"), [(0.0407 / 120, 1e-4), (0.1, 0.05), (1.0, 0.0)])
def test_stepped_wedge_closed_form_equals_direct_gls(x, sigma2, tau2):
    assert stepped_wedge_variance(x, sigma2, tau2) == pytest.approx(
        _gls_variance(x, sigma2, tau2), rel=1e-10
    )


def test_stepped_wedge_t_option_uses_clusters_minus_two_df():
    x = stepped_wedge_design(2, n_steps=3)  # 6 clusters -> df 4
    var = stepped_wedge_variance(x, 1.0 / 20, 0.05 / 0.95)
    ncp, crit = 0.4 / np.sqrt(var), stats.t.isf(0.025, 4)
    expected = stats.nct.sf(crit, 4, ncp) + stats.nct.cdf(-crit, 4, ncp)
    got = power_stepped_wedge(0.4, n_per_period=20, icc=0.05, treatment_matrix=x, dist="t")
    assert got == pytest.approx(expected, abs=1e-10)
    assert got < power_stepped_wedge(0.4, n_per_period=20, icc=0.05, treatment_matrix=x)


# --------------------------------------------------------------------------------------------
# IRGT against the exact sampling distribution (Monte Carlo)


def _simulate_irgt_welch(effect, n_groups, group_size, n_control, icc, reps, rng):
    """Rejection rate of the Welch-Satterthwaite t test on simulated group and control data.

    Exact sampling distributions: group means ~ N(effect, sigma_g^2 + sigma_e^2/m); control
    mean ~ N(0, sigma_e^2/n_C) independent of its variance ~ sigma_e^2 chi2_{n_C-1}/(n_C-1).
    """
    sigma_g2 = icc / (1 - icc)
    group_means = effect + rng.normal(
        0.0, np.sqrt(sigma_g2 + 1 / group_size), size=(reps, n_groups)
    )
    v_t = group_means.var(axis=1, ddof=1) / n_groups
    control_mean = rng.normal(0.0, np.sqrt(1 / n_control), size=reps)
    v_c = rng.chisquare(n_control - 1, size=reps) / (n_control - 1) / n_control
    t = (group_means.mean(axis=1) - control_mean) / np.sqrt(v_t + v_c)
    df = (v_t + v_c) ** 2 / (v_t**2 / (n_groups - 1) + v_c**2 / (n_control - 1))
    return np.mean(np.abs(t) > stats.t.isf(0.025, df))


@pytest.mark.parametrize(
    ("effect", "n_groups", "group_size", "n_control", "icc"),
    [(0.5, 10, 8, 80, 0.1), (0.5, 6, 10, 60, 0.1), (0.35, 12, 6, 100, 0.05), (0.0, 10, 8, 80, 0.1)],
)
def test_irgt_power_matches_monte_carlo(effect, n_groups, group_size, n_control, icc):
    # 20 000 seeded replicates; |MC - analytic| must be within 3 Monte Carlo SEs
    # (SE = sqrt(p(1-p)/R) <= 0.0036). Measured: |z| <= 1.27. With very few groups
    # (G = 4) the Satterthwaite approximation is conservative by ~0.02 -- not tested here.
    reps = 20_000
    rng = np.random.default_rng([20240601, n_groups, group_size, n_control])
    analytic = power_irgt(
        effect, n_groups=n_groups, group_size=group_size, n_control=n_control, icc=icc
    )
    mc = _simulate_irgt_welch(effect, n_groups, group_size, n_control, icc, reps, rng)
    se = np.sqrt(analytic * (1 - analytic) / reps)
    assert abs(mc - analytic) < 3 * se


def test_irgt_variable_group_size_uses_exact_weighted_variance():
    # Treated-arm variance for groups of drawn sizes, size-weighted (independent derivation, as
    # for the CRT), then the same Satterthwaite/noncentral-t machinery written out by hand.
    rng = np.random.default_rng(7)
    sizes = rng.integers(4, 16, size=9).astype(float)
    icc, n_c, d = 0.08, 70, 0.45
    g, m_bar, cv = sizes.size, sizes.mean(), sizes.std() / sizes.mean()
    sigma_g2 = icc / (1 - icc)
    v_t = (sigma_g2 * np.sum(sizes**2) + np.sum(sizes)) / np.sum(sizes) ** 2
    v_c = 1 / n_c
    df = (v_t + v_c) ** 2 / (v_t**2 / (g - 1) + v_c**2 / (n_c - 1))
    ncp, crit = d / np.sqrt(v_t + v_c), stats.t.isf(0.025, df)
    expected = (1 - special.nctdtr(df, ncp, crit)) + special.nctdtr(df, ncp, -crit)
    got = power_irgt(d, n_groups=g, group_size=m_bar, n_control=n_c, icc=icc, cv_group_size=cv)
    assert got == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------------------------
# adjustments


_BASE = {
    "irgt": dict(effect=0.6, n_groups=10, group_size=8, n_control=60, icc=0.05, sd=1.2),
    "crt": dict(effect=0.4, n_clusters=10, cluster_size=20, icc=0.05, sd=1.2),
    "stepped_wedge": dict(
        effect=0.3, n_per_period=10, icc=0.05, clusters_per_step=2, n_steps=4, sd=1.2
    ),
}
_FUNC = {"irgt": power_irgt, "crt": power_crt, "stepped_wedge": power_stepped_wedge}
_SIZES = {
    "irgt": ("group_size", "n_control"),
    "crt": ("cluster_size",),
    "stepped_wedge": ("n_per_period",),
}


@pytest.mark.parametrize("design", sorted(_BASE))
def test_adjustments_are_the_documented_substitutions(design):
    f, p = _FUNC[design], _BASE[design]
    r, drop, comp = 0.6, 0.2, 0.7
    # ANCOVA (Borm et al. 2007): residual variance x (1 - r^2)
    assert f(**p, baseline_corr=r) == pytest.approx(f(**{**p, "sd": p["sd"] * np.sqrt(1 - r**2)}))
    # attrition: expected completers
    shrunk = {k: p[k] * (1 - drop) for k in _SIZES[design]}
    assert f(**p, dropout=drop) == pytest.approx(f(**{**p, **shrunk}))
    # non-compliance: ITT effect = compliance x CACE
    assert f(**p, compliance=comp) == pytest.approx(f(**{**p, "effect": p["effect"] * comp}))


def test_compliance_and_ancova_scale_the_minimum_detectable_effect():
    p = {k: v for k, v in _BASE["stepped_wedge"].items() if k != "effect"}
    mde = solve_power("stepped_wedge", **p, effect=None, power=0.8)
    # ITT = compliance x CACE, so the detectable CACE is MDE / compliance (n x 1/c^2)
    assert solve_power("stepped_wedge", **p, effect=None, power=0.8, compliance=0.5) == (
        pytest.approx(mde / 0.5, rel=1e-9)
    )
    # normal-approximation SW variance is homogeneous in (sigma^2, tau^2): MDE x sqrt(1 - r^2)
    assert solve_power("stepped_wedge", **p, effect=None, power=0.8, baseline_corr=0.6) == (
        pytest.approx(mde * 0.8, rel=1e-9)
    )


# --------------------------------------------------------------------------------------------
# vectorisation


def test_power_functions_broadcast_like_a_loop():
    effects = np.array([0.2, 0.4, 0.6])
    iccs = np.array([[0.0], [0.05], [0.2]])
    grid = power_irgt(effects, n_groups=8, group_size=6, n_control=50, icc=iccs)
    assert grid.shape == (3, 3)
    loop = [
        [power_irgt(e, n_groups=8, group_size=6, n_control=50, icc=i) for e in effects]
        for i in iccs[:, 0]
    ]
    np.testing.assert_allclose(grid, loop, rtol=1e-12)
    crt = power_crt(0.3, n_clusters=np.arange(5, 9), cluster_size=20, icc=0.05)
    assert crt.shape == (4,) and np.all(np.diff(crt) > 0)
    assert isinstance(power_crt(0.3, n_clusters=5, cluster_size=20, icc=0.05), float)


# --------------------------------------------------------------------------------------------
# solve_power round trips: every solvable argument of every design


@pytest.mark.parametrize(("design", "name"), [(d, n) for d in sorted(_BASE) for n in SOLVABLE[d]])
def test_solve_power_round_trip(design, name):
    f, params = _FUNC[design], dict(_BASE[design])
    target = 0.8
    if name == "power":
        assert solve_power(design, **params, power=None) == f(**params)
        return
    if name in ("icc", "sd", "alpha", "dropout"):
        # the round trip: solving at the power of known inputs gives the input back
        params.setdefault(name, {"sd": 1.0, "alpha": 0.05, "dropout": 0.2}.get(name))
        known = params[name]
        solved = solve_power(design, **dict(params, **{name: None}), power=f(**params))
        assert isinstance(solved, float)
        assert solved == pytest.approx(known, rel=1e-7)
        return
    params[name] = None
    solved = solve_power(design, **params, power=target)
    params[name] = solved
    if name == "effect":
        assert solved > 0
        assert f(**params) == pytest.approx(target, abs=1e-8)
    else:
        assert isinstance(solved, int)
        assert f(**params) >= target
        params[name] = solved - 1
        lowest = 2 if name in ("n_groups", "n_control", "n_clusters") else 1
        assert solved == lowest or f(**params) < target


def test_solve_power_solves_with_an_explicit_stepped_wedge_matrix():
    x = stepped_wedge_design(3, n_steps=3)
    n = solve_power(
        "stepped_wedge", effect=0.25, n_per_period=None, icc=0.05, treatment_matrix=x, power=0.9
    )
    assert power_stepped_wedge(0.25, n_per_period=n, icc=0.05, treatment_matrix=x) >= 0.9
    assert power_stepped_wedge(0.25, n_per_period=n - 1, icc=0.05, treatment_matrix=x) < 0.9


# --------------------------------------------------------------------------------------------
# errors


def test_solve_power_icc_and_alpha_explain_targets_out_of_range():
    base = dict(effect=0.3, n_groups=6, group_size=6, n_control=40, power=0.9)
    with pytest.raises(ValueError, match="unreachable by changing icc: power is at most"):
        solve_power("irgt", **base, icc=None)
    with pytest.raises(ValueError, match="whole range of alpha"):
        solve_power("irgt", **dict(base, effect=50.0), icc=0.05, alpha=None)
    assert power_irgt(500.0, n_groups=6, group_size=6, n_control=40, icc=0.01) == 1.0
    # left-out sd and alpha keep their defaults instead of becoming unknowns
    assert solve_power("irgt", **dict(base, power=None), icc=0.05) == power_irgt(
        0.3, n_groups=6, group_size=6, n_control=40, icc=0.05
    )


def test_solve_power_needs_exactly_one_unknown():
    with pytest.raises(ValueError, match="exactly one of .* but no argument is None"):
        solve_power("crt", effect=0.3, n_clusters=10, cluster_size=20, icc=0.05, power=0.8)
    with pytest.raises(ValueError, match=r"2 arguments are None: \['effect', 'n_clusters'\]"):
        solve_power("crt", effect=None, n_clusters=None, cluster_size=20, icc=0.05, power=0.8)
    with pytest.raises(ValueError, match="design must be one of"):
        solve_power("factorial", effect=None)
    with pytest.raises(TypeError, match="unexpected argument.*n_groups"):
        solve_power("crt", effect=None, n_groups=3, n_clusters=10, cluster_size=20, icc=0.05)
    with pytest.raises(ValueError, match="power must be a number in"):
        solve_power("crt", effect=None, n_clusters=10, cluster_size=20, icc=0.05, power=0.01)


def test_solve_power_explains_unreachable_targets():
    with pytest.raises(ValueError, match="unreachable by increasing group_size.*add groups"):
        solve_power(
            "irgt", effect=0.4, n_groups=4, group_size=None, n_control=80, icc=0.2, power=0.8
        )
    with pytest.raises(ValueError, match="unreachable by increasing cluster_size.*add clusters"):
        solve_power("crt", effect=0.2, n_clusters=4, cluster_size=None, icc=0.1, power=0.8)


@pytest.mark.parametrize(
    ("func", "kwargs", "name"),
    [
        (power_irgt, dict(n_groups=1, group_size=8, n_control=50, icc=0.1), "n_groups"),
        (power_irgt, dict(n_groups=5, group_size=0, n_control=50, icc=0.1), "group_size"),
        (power_irgt, dict(n_groups=5, group_size=8, n_control=50, icc=1.0), "icc"),
        (power_irgt, dict(n_groups=5, group_size=8, n_control=50, icc=0.1, sd=-1), "sd"),
        (power_irgt, dict(n_groups=5, group_size=8, n_control=50, icc=0.1, alpha=0), "alpha"),
        (
            power_irgt,
            dict(n_groups=5, group_size=8, n_control=50, icc=0.1, cv_group_size=-0.1),
            "cv_group_size",
        ),
        (
            power_irgt,
            dict(n_groups=5, group_size=8, n_control=2, icc=0.1, dropout=0.6),
            "n_control",
        ),
        (power_crt, dict(n_clusters=1, cluster_size=8, icc=0.1), "n_clusters"),
        (power_crt, dict(n_clusters=5, cluster_size=8, icc=0.1, dropout=1.0), "dropout"),
        (power_crt, dict(n_clusters=5, cluster_size=8, icc=0.1, compliance=0), "compliance"),
        (power_crt, dict(n_clusters=5, cluster_size=8, icc=0.1, baseline_corr=1), "baseline_corr"),
        (power_crt, dict(n_clusters=2, cluster_size=8, icc=0.1, n_covariates=2), "n_covariates"),
        (
            power_stepped_wedge,
            dict(n_per_period=0, icc=0.1, clusters_per_step=2, n_steps=3),
            "n_per_period",
        ),
        (
            power_stepped_wedge,
            dict(n_per_period=5, icc=0.1, clusters_per_step=2.5, n_steps=3),
            "clusters_per_step",
        ),
        (
            power_stepped_wedge,
            dict(n_per_period=5, icc=0.1, treatment_matrix=np.zeros((4, 3))),
            "treatment_matrix",
        ),
        (
            power_stepped_wedge,
            dict(n_per_period=5, icc=0.1, treatment_matrix=[[0, 2], [0, 1]]),
            "treatment_matrix",
        ),
    ],
)
def test_bad_inputs_name_the_argument(func, kwargs, name):
    with pytest.raises(ValueError, match=name):
        func(0.3, **kwargs)
