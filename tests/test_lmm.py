"""Oracles for the general random-intercepts engine (trialsim.analyse.lmm.fit_lmm).

* lmerTest on one simulated trial of each structure (groups in both arms with a common and an
  arm-specific variance, partially nested, nested cluster + group, crossed site + group +
  trainer, and ML): numbers frozen below from ``scripts/compare_lmm.R`` (the R call is in
  each entry).
* lmerTest on the Tennessee STAR school trial (tests/data/real/oracles.json).
* The one-term engine (trialsim.analyse.reml) and the nested engine
  (trialsim.analyse.reml_nested), each itself checked against lme4, on the same data.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trialsim.analyse.lmm import fit_lmm
from trialsim.analyse.lmm_terms import structure_terms
from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.registry import get_analysis
from trialsim.analyse.reml import cluster_stats, fit_reml_masked, profiled_grid
from trialsim.analyse.reml_nested import fit_reml_nested
from trialsim.io import read_trial_data
from trialsim.io.declare import Declarations
from trialsim.scenario import load_scenario
from trialsim.simulate import simulate_trials

from .conftest import ROOT
from .test_reml import partially_nested
from .test_reml_nested import masked_design, nested_trial

REAL = Path(__file__).parent / "data" / "real"

# --------------------------------------------------------------------------- data


def _groups(rng, rows, low=4, high=9, start=0):
    """Consecutive runs of ``rows`` as groups of ``low``..``high - 1`` members, numbered from
    ``start``; returns (ids per row, next free id)."""
    ids = np.empty(rows.size, dtype=np.int64)
    at, g = 0, start
    while at < rows.size:
        size = int(rng.integers(low, high))
        ids[at : at + size] = g
        at, g = at + size, g + 1
    return ids, g


def lmm_dataset(kind: str, seed: int):
    """One trial of each structure: ``(X (N, p), y (N,), terms [(name, ids (N,))], reml)``.

    both_common / both_by_arm: 2 arms, groups of 4-8 in both (group variance common, or
    0.02 in control and 0.25 in treatment); partially_nested: 20 treated groups, 110
    ungrouped controls, 4 site strata as fixed effects; nested (and nested_ml, fitted by ML):
    12 randomised clusters of 25, treated clusters' rows in groups of 3-8; crossed: 6 sites as
    a random intercept, 40 controls and 3 treated groups per site, 5 trainers each running
    groups in several sites (trainers crossed with sites)."""
    rng = np.random.default_rng(seed)
    base = kind.removesuffix("_ml")
    if base in ("both_common", "both_by_arm"):
        arm = np.repeat([0, 1], 110)
        g0, nxt = _groups(rng, np.arange(110))
        g1, _ = _groups(rng, np.arange(110), start=nxt)
        group = np.concatenate([g0, g1])
        sd = np.sqrt(np.where(arm == 1, 0.25, 0.02 if base == "both_by_arm" else 0.25))
        u = rng.normal(size=group.max() + 1)
        n = arm.size
        x = rng.normal(size=n)
        y = 0.3 * arm + 0.5 * x + sd * u[group] + rng.normal(size=n)
        X = np.column_stack([np.ones(n), arm, x])
        if base == "both_common":
            terms = [("group", group)]
        else:
            terms = [
                ("group_control", np.where(arm == 0, group, -1)),
                ("group_treatment", np.where(arm == 1, group, -1)),
            ]
    elif base == "partially_nested":
        group, n_groups = _groups(rng, np.arange(130))
        n = 130 + 110
        group = np.concatenate([group, -np.ones(110, dtype=np.int64)])
        arm = (group >= 0).astype(float)
        site = rng.integers(0, 4, size=n)
        x = rng.normal(size=n)
        u = rng.normal(scale=0.35, size=n_groups)
        y = (
            0.3 * arm
            + 0.5 * x
            + 0.2 * site
            + np.where(group >= 0, u[group], 0)
            + rng.normal(size=n)
        )
        X = np.column_stack([np.ones(n), arm, x] + [site == s for s in (1, 2, 3)]).astype(float)
        terms = [("group", group)]
    elif base == "nested":
        cluster = np.repeat(np.arange(12), 25)
        n = cluster.size
        arm = (cluster % 2).astype(float)
        group = -np.ones(n, dtype=np.int64)
        nxt = 0
        for m in range(1, 12, 2):
            rows = np.flatnonzero(cluster == m)
            group[rows], nxt = _groups(rng, rows, 3, 9, nxt)
        x = rng.normal(size=n)
        u = rng.normal(scale=0.3, size=12)
        v = rng.normal(scale=0.4, size=nxt)
        y = (
            0.3 * arm
            + 0.5 * x
            + u[cluster]
            + np.where(group >= 0, v[group], 0)
            + rng.normal(size=n)
        )
        X = np.column_stack([np.ones(n), arm, x])
        terms = [("cluster", cluster), ("group", group)]
    elif base in ("crossed", "crossed_null"):
        site, group, trainer = [], [], []
        nxt = 0
        for s in range(6):
            site.append(np.full(40, s))
            group.append(-np.ones(40, dtype=np.int64))
            trainer.append(-np.ones(40, dtype=np.int64))
            for _ in range(3):
                size = int(rng.integers(4, 9))
                site.append(np.full(size, s))
                group.append(np.full(size, nxt))
                trainer.append(np.full(size, rng.integers(0, 5)))
                nxt += 1
        site, group, trainer = map(np.concatenate, (site, group, trainer))
        n = site.size
        arm = (group >= 0).astype(float)
        x = rng.normal(size=n)
        us, ug, ut = (
            rng.normal(scale=sc, size=k)
            for sc, k in ((0.3, 6), (0.4, nxt), (0.3 * (base == "crossed"), 5))
        )
        y = (
            0.3 * arm
            + 0.5 * x
            + us[site]
            + np.where(group >= 0, ug[group] + ut[trainer], 0)
            + rng.normal(size=n)
        )
        X = np.column_stack([np.ones(n), arm, x])
        terms = [("site", site), ("group", group), ("trainer", trainer)]
    else:
        raise ValueError(kind)
    return X, y, terms, not kind.endswith("_ml")


DATASETS = {  # name: (structure, seed)
    "both_common": ("both_common", 11),
    "both_by_arm": ("both_by_arm", 12),
    "partially_nested": ("partially_nested", 13),
    "nested": ("nested", 14),
    "nested_ml": ("nested_ml", 14),
    "crossed": ("crossed", 15),
    "crossed_null": ("crossed_null", 21),  # no trainer variance: trainer at the boundary
    "crossed_null_two": ("crossed_null", 22),  # group and trainer variances at 0
}


def fit_one(name: str):
    X, y, terms, reml = lmm_dataset(*DATASETS[name])
    Xy = np.concatenate([X, y[:, None]], axis=1)[None]
    used = np.ones((1, len(y)), dtype=bool)
    return fit_lmm(Xy, [(t, ids[None]) for t, ids in terms], used, reml=reml)


# Frozen from scripts/compare_lmm.R (R 4.2.2, lme4 1.1.31, lmerTest 3.1.3) on the CSVs that
# scripts/compare_lmm.py writes from lmm_dataset; every fit is
#   lmer(<call>, data = d, REML = <reml>, control = lmerControl(optimizer = "bobyqa",
#        optCtrl = list(rhoend = 1e-12, maxfun = 1e5)))
# with in_<term> = as.numeric(t_<term> >= 0) and t_<term> a factor (level -1 has no effect);
# estimate, se, df: summary(fit)$coefficients["x1", ] (Satterthwaite); criterion: REMLcrit
# (deviance for ML); variance: as.data.frame(VarCorr(fit))$vcov; sigma2: sigma(fit)^2.
LMERTEST = {
    "both_common": {
        # y ~ 0 + x0 + x1 + x2 + (0 + in_group | t_group), REML = TRUE
        "estimate": 0.308155205509432,
        "se": 0.2057262200068,
        "df": 34.2238010830522,
        "sigma2_residual": 1.14141549484934,
        "variance": {"group": 0.193788448183493},
        "criterion": 683.26367043474,
        "singular": False,
    },
    "both_by_arm": {
        # y ~ 0 + x0 + x1 + x2 + (0 + in_group_control | t_group_control)
        #     + (0 + in_group_treatment | t_group_treatment), REML = TRUE
        "estimate": 0.424095333325064,
        "se": 0.191338654729982,
        "df": 30.1365178256995,
        "sigma2_residual": 0.955439126095242,
        "variance": {"group_control": 0.0238612379647099, "group_treatment": 0.334702406160585},
        "criterion": 642.786804496963,
        "singular": False,
    },
    "partially_nested": {
        # y ~ 0 + x0 + x1 + x2 + x3 + x4 + x5 + (0 + in_group | t_group), REML = TRUE
        "estimate": 0.323293521198018,
        "se": 0.171377728758456,
        "df": 45.2739390837157,
        "sigma2_residual": 1.08120799645985,
        "variance": {"group": 0.209457340020463},
        "criterion": 723.382517398212,
        "singular": False,
    },
    "nested": {
        # y ~ 0 + x0 + x1 + x2 + (0 + in_cluster | t_cluster)
        #     + (0 + in_group | t_group), REML = TRUE
        "estimate": 0.232178683253575,
        "se": 0.228044965113582,
        "df": 6.53464644095597,
        "sigma2_residual": 1.02616417480779,
        "variance": {"cluster": 0.100865620099458, "group": 0.120006109506829},
        "criterion": 889.60431651811,
        "singular": False,
    },
    "nested_ml": {
        # y ~ 0 + x0 + x1 + x2 + (0 + in_cluster | t_cluster)
        #     + (0 + in_group | t_group), REML = FALSE
        "estimate": 0.25359798062098,
        "se": 0.159488131379796,
        "df": 53.6326917854019,
        "sigma2_residual": 1.0119587986221,
        "variance": {"cluster": 0.0, "group": 0.316755624317902},
        "criterion": 881.752348644859,
        "singular": True,
    },
    "crossed": {
        # y ~ 0 + x0 + x1 + x2 + (0 + in_site | t_site) + (0 + in_group | t_group)
        #     + (0 + in_trainer | t_trainer), REML = TRUE
        "estimate": 0.559880446911206,
        "se": 0.330821190597941,
        "df": 4.12225116101296,
        "sigma2_residual": 0.921005918205177,
        "variance": {
            "site": 0.0995110976845658,
            "group": 0.147182771549624,
            "trainer": 0.441711929807781,
        },
        "criterion": 1002.85021344604,
        "singular": False,
    },
    "crossed_null": {
        # y ~ 0 + x0 + x1 + x2 + (0 + in_site | t_site) + (0 + in_group | t_group)
        #     + (0 + in_trainer | t_trainer), REML = TRUE
        "estimate": 0.385848896244068,
        "se": 0.131933324834117,
        "df": 25.6498739547269,
        "sigma2_residual": 1.05159049787123,
        "variance": {"site": 0.0727191257522143, "group": 0.0665956729760269, "trainer": 0.0},
        "criterion": 1045.94108648872,
        "singular": True,
    },
    "crossed_null_two": {
        # y ~ 0 + x0 + x1 + x2 + (0 + in_site | t_site) + (0 + in_group | t_group)
        #     + (0 + in_trainer | t_trainer), REML = TRUE
        "estimate": 0.0652837969638829,
        "se": 0.121435635193752,
        "df": 332.816528655826,
        "sigma2_residual": 1.03452960635026,
        "variance": {"site": 0.0775197175019066, "group": 0.0, "trainer": 0.0},
        "criterion": 991.971869760763,
        "singular": True,
    },
}


# --------------------------------------------------------------------------- lmerTest


@pytest.mark.parametrize("name", list(LMERTEST))
def test_equals_lmertest(name):
    """Estimate, SE, Satterthwaite df, variances and the REML criterion (ML deviance) equal
    lmerTest's on each structure, including fits with one or two variances at zero."""
    ref = LMERTEST[name]
    fit = fit_one(name)
    e = fit.estimates
    assert e.estimate[0] == pytest.approx(ref["estimate"], rel=1e-6)
    assert e.se[0] == pytest.approx(ref["se"], rel=1e-6)
    assert e.df[0] == pytest.approx(ref["df"], rel=1e-5)
    assert fit.sigma2_residual[0] == pytest.approx(ref["sigma2_residual"], rel=1e-6)
    for term, value in ref["variance"].items():
        assert fit.variance[term][0] == pytest.approx(value, rel=1e-5, abs=1e-7)
        assert (fit.variance[term][0] == 0.0) == (value == 0.0)
    assert -2.0 * fit.loglik[0] == pytest.approx(ref["criterion"], abs=1e-8)
    assert bool(e.boundary[0]) == ref["singular"]
    assert e.converged[0] and not e.failed[0]


@pytest.fixture(scope="module")
def star():
    data = read_trial_data(REAL / "star.csv", declared=Declarations(reference="reg"))
    return json.loads((REAL / "oracles.json").read_text())["star"], data


@pytest.mark.parametrize(("arm", "term"), [("small", "armsmall"), ("reg+A", "armreg+A")])
def test_school_trial_equals_lmertest(star, arm, term):
    """Tennessee STAR (mlmRev::star): ``lmer(math ~ arm + factor(school) + (1 | class))``,
    three arms in one fit; the general engine and the ``lmm`` analysis (one term: the fast
    path) both equal lmerTest (refit with bobyqa, rhoend 1e-12)."""
    oracles, data = star
    ref = oracles["three_arm"]["refit_tight"]
    d = data.for_contrast(arm)
    a = ancova_arrays(d, "math")
    fit = fit_lmm(a.Xy, [("class", a.cluster)], a.mask)
    via_registry = get_analysis("lmm").estimate(d, "math")
    for e in (fit.estimates, via_registry):
        assert e.estimate[0] == pytest.approx(ref["terms"][term]["estimate"], rel=1e-6)
        assert e.se[0] == pytest.approx(ref["terms"][term]["se"], rel=1e-6)
        assert e.df[0] == pytest.approx(ref["terms"][term]["df"], rel=1e-5)
        assert e.variance["class"][0] == pytest.approx(ref["var_group"], rel=1e-5)
    assert -2.0 * fit.loglik[0] == pytest.approx(ref["reml_criterion"], abs=1e-6)


# --------------------------------------------------------------------------- other engines


def _agree(general, special, loglik):
    a, b = general.estimates, special.estimates
    np.testing.assert_array_equal(a.boundary, b.boundary)
    assert a.converged.all() and b.converged.all()
    np.testing.assert_allclose(a.estimate, b.estimate, atol=1e-7 * np.nanmax(b.se))
    np.testing.assert_allclose(a.se, b.se, rtol=3e-8)
    np.testing.assert_allclose(a.df, b.df, rtol=3e-7)
    np.testing.assert_allclose(general.loglik, loglik, rtol=0, atol=1e-9)


def test_one_term_equals_the_one_term_engine():
    """Partially nested SFT shape with missing rows, 60 replicates: the same fits as
    trialsim.analyse.reml (which stops at a ratio step of 1e-7: the differences measured are
    <= 1e-8 relative in estimate and SE, 1e-7 in df, 2e-13 in the REML criterion)."""
    y, X, cluster = partially_nested(np.random.default_rng(3), 60, missing=0.1)
    Xy, used = masked_design(y, X)
    one = fit_reml_masked(Xy, cluster, used)
    _agree(fit_lmm(Xy, [("cluster", cluster)], used), one, one.reml_loglik)


def test_one_profiled_likelihood():
    """The profiled criterion that calibration and the exact Bayesian posterior use
    (reml.profiled_grid) is the fitted engines': at the REML ratio it gives their REML
    log-likelihood, estimate and SE."""
    y, X, cluster = partially_nested(np.random.default_rng(6), 5)
    Xy, used = masked_design(y, X)
    fit = fit_lmm(Xy, [("cluster", cluster)], used)
    stats = cluster_stats(y, X, cluster)
    for r in range(5):
        grid = profiled_grid(stats.take(slice(r, r + 1)), fit.ratio[r], coef=1)
        assert grid.reml_loglik()[0, 0] == pytest.approx(fit.loglik[r], abs=1e-9)
        assert grid.beta[0, 0] == pytest.approx(fit.estimates.estimate[r], rel=1e-10)
        s2 = grid.Q[0, 0] / grid.resid_df[0]
        assert np.sqrt(s2 * grid.c_kk[0, 0]) == pytest.approx(fit.estimates.se[r], rel=1e-10)


def test_two_nested_terms_equal_the_nested_engine():
    """Clusters with groups inside (40 replicates, some at a boundary): the same fits as
    trialsim.analyse.reml_nested."""
    y, X, cluster, group = nested_trial(np.random.default_rng(4), 40, missing=0.05)
    Xy, used = masked_design(y, X)
    nested = fit_reml_nested(Xy, cluster, group, used)
    fit = fit_lmm(Xy, [("cluster", cluster), ("group", group)], used)
    assert fit.estimates.boundary.any()
    _agree(fit, nested, nested.reml_loglik)
    np.testing.assert_allclose(fit.variance["group"], nested.sigma2_group, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- batching, flags


def test_batched_equals_one_at_a_time_threads_and_failed_replicates():
    """A batch of crossed fits equals fitting each replicate alone, on any thread count; a
    replicate whose effect column is all zero is failed (NaN), never raises, and leaves the
    others unchanged; a term no level of which has two rows is held at zero (not a boundary).
    An all-zero covariate column (a stratum nobody is measured in) is dropped, as lme4 drops
    it: the fit equals the fit without that column, with NaN for its coefficient."""
    X, y, terms, _ = lmm_dataset("crossed", 15)
    rng = np.random.default_rng(5)
    ys = y + rng.normal(scale=0.5, size=(6, len(y)))
    Xy = np.concatenate([np.broadcast_to(X, (6, *X.shape)), ys[..., None]], axis=-1)
    Xy[2, :, 1] = 0.0  # replicate 2: the effect column is all zero
    Xy[4, :, 2] = 0.0  # replicate 4: the x column is all zero (aliased, dropped)
    used = np.ones(ys.shape, dtype=bool)
    ids = [(t, np.broadcast_to(i, ys.shape)) for t, i in terms]
    singles = np.where(np.arange(len(y)) < 20, np.arange(len(y)), -1)  # 20 rows, alone
    singles = np.broadcast_to(singles, ys.shape)
    batch = fit_lmm(Xy, [*ids, ("single", singles)], used, threads=2)
    assert batch.estimates.failed.tolist() == [False, False, True, False, False, False]
    assert np.isnan(batch.estimates.estimate[2]) and np.isnan(batch.variance["site"][2])
    assert batch.held[~batch.estimates.failed, 3].all()
    plain = fit_lmm(Xy, ids, used, threads=1)
    for r in (0, 1, 3, 4, 5):
        alone = fit_lmm(Xy[r : r + 1], [(t, i[r : r + 1]) for t, i in ids], used[r : r + 1])
        if r == 4:  # the oracle is the fit without the aliased column
            alone = fit_lmm(
                np.delete(Xy[4:5], 2, axis=-1), [(t, i[4:5]) for t, i in ids], used[4:5]
            )
            assert np.isnan(plain.beta[4, 2]) and np.isnan(plain.cov_beta[4, 2, 2])
            assert plain.loglik[4] == pytest.approx(alone.loglik[0], rel=1e-10)
        for f in ("estimate", "se", "df"):
            assert getattr(alone.estimates, f)[0] == pytest.approx(
                getattr(plain.estimates, f)[r], rel=1e-9
            )
            assert getattr(batch.estimates, f)[r] == pytest.approx(
                getattr(plain.estimates, f)[r], rel=1e-9
            )


def test_bad_terms_are_refused():
    Xy = np.zeros((1, 4, 3))
    used = np.ones((1, 4), dtype=bool)
    with pytest.raises(ValueError, match="term names must differ"):
        fit_lmm(Xy, [("g", np.zeros(4)), ("g", np.zeros(4))], used)
    with pytest.raises(ValueError, match="at least one"):
        fit_lmm(Xy, [], used)


# --------------------------------------------------------------------------- lmm analysis


@pytest.fixture(scope="module")
def attention():
    return simulate_trials(load_scenario(ROOT / "scenarios" / "attention-control.toml"), 8, seed=2)


def test_lmm_analysis_terms_follow_the_structure(attention):
    """Groups in both arms with variance by arm: one term per arm plus trainers (crossed);
    the analysis equals fit_lmm on those terms. With a common group variance: one group term
    and trainers."""
    data = attention
    outcome = data.structure.primary_outcome
    a = ancova_arrays(data, outcome)
    terms = structure_terms(data, a)
    arms = data.structure.arms
    assert [t for t, _ in terms] == [f"group[{arms[0]}]", f"group[{arms[1]}]", "trainer"]
    est = get_analysis("lmm").estimate(data, outcome)
    direct = fit_lmm(a.Xy, terms, a.mask).estimates
    np.testing.assert_array_equal(est.estimate, direct.estimate)
    assert set(est.variance) == {"residual", *(t for t, _ in terms)}
    common = replace(data, structure=replace(data.structure, group_variance="common"))
    assert [t for t, _ in structure_terms(common, a)] == ["group", "trainer"]


@pytest.mark.slow
def test_crossed_fits_reach_the_global_optimum():
    """On 12 crossed three-term replicates (variances drawn from 0 to 0.36, many at a boundary)
    no multi-start bounded quasi-Newton search (scipy L-BFGS-B, 10 random starts) finds a lower
    profiled criterion than fit_lmm."""
    from scipy.optimize import minimize

    from trialsim.analyse import lmm

    X, y, terms, _ = lmm_dataset("crossed", 15)
    rng = np.random.default_rng(9)
    n_rep = 12
    Xy = np.empty((n_rep, len(y), X.shape[1] + 1))
    Xy[..., :-1] = X
    for r in range(n_rep):
        y_r = X @ [0.0, 0.3, 0.5] + rng.normal(size=len(y))
        for _, ids in terms:
            u = rng.normal(scale=rng.uniform(0, 0.6), size=ids.max() + 1)
            y_r += np.where(ids >= 0, u[np.maximum(ids, 0)], 0.0)
        Xy[r, :, -1] = y_r
    used = np.ones((n_rep, len(y)), dtype=bool)
    ids = [(t, np.broadcast_to(i, used.shape)) for t, i in terms]
    fit = fit_lmm(Xy, ids, used)
    stacked = np.ascontiguousarray(np.stack([i for _, i in ids], -1))
    WW, G, ZW, E, _, n_obs = lmm._block_stats(Xy, used, stacked)
    nu = (n_obs - X.shape[1]).astype(float)
    assert fit.estimates.boundary.any() and fit.estimates.converged.all()
    for r in range(n_rep):
        one = (WW[r : r + 1], G[r : r + 1], ZW[r : r + 1], E, nu[r : r + 1], True, False)

        def crit(v, one=one):
            return lmm._evaluate(np.asarray(v)[None], *one).d[0]

        best = min(
            minimize(crit, start, method="L-BFGS-B", bounds=[(0, None)] * 3).fun
            for start in rng.uniform(0, 2, size=(10, 3))
        )
        assert crit(fit.ratio[r]) <= best + 1e-8
