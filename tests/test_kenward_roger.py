"""Kenward-Roger SE and df (trialsim.analyse.kenward_roger) in the REML engines.

Oracles:

* pbkrtest 0.5.2 ``vcovAdj`` (SE) and ``get_Lb_ddf`` (df), equal to lmerTest 3.1.3's
  ``summary(fit, ddf = "Kenward-Roger")``, on the simulated trials of tests/test_lmm.py (groups
  in both arms with a common and an arm-specific variance, partially nested, nested cluster +
  group, crossed site + group + trainer, with one and two variances at zero), on the
  Tennessee STAR school trial ``lmer(math ~ arm + factor(school) + (1 | class))`` and on
  BtheB long ``lmer(bdi ~ bdi.pre + factor(month) + treatment + drug + length +
  (1 | participant))``; frozen in tests/data/kenward_roger.json by ``Rscript
  scripts/kenward_roger.R`` (R 4.2.2, lme4 1.1.31; the calls are in the file).
* Analytic: in a balanced cluster-randomised trial (equal clusters, no row-level covariate)
  the Kenward-Roger df are the containment df ``clusters - 2`` and the SE that of the t test
  on cluster means (Kenward & Roger 1997, section 5: the approximation is exact there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trialsim.analyse.lmm import fit_lmm
from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.registry import get_analysis
from trialsim.analyse.reml import fit_reml_masked
from trialsim.io import read_trial_data
from trialsim.io.declare import Declarations

from .test_lmm import DATASETS, lmm_dataset

HERE = Path(__file__).parent
KR = json.loads((HERE / "data" / "kenward_roger.json").read_text())
REAL = HERE / "data" / "real"

# observed agreement 2e-7 or better; lme4's optimum (bobyqa, rhoend 1e-12) is determined to
# about 1e-8 relative in theta, which moves SE and df in the 7th-8th digit
RTOL = 1e-6


def _design(name):
    X, y, terms, _ = lmm_dataset(*DATASETS[name])
    Xy = np.concatenate([X, y[:, None]], axis=1)[None]
    return Xy, [(t, ids[None]) for t, ids in terms], np.ones((1, len(y)), dtype=bool)


def _check(est, ref):
    assert est.estimate[0] == pytest.approx(ref["estimate"], rel=1e-6)
    assert est.se[0] == pytest.approx(ref["se_kr"], rel=RTOL)
    assert est.df[0] == pytest.approx(ref["df_kr"], rel=RTOL)
    assert est.converged[0] and not est.failed[0]


@pytest.mark.parametrize("name", list(KR["simulated"]))
@pytest.mark.parametrize("coef", [1, 2])
def test_general_engine_equals_pbkrtest(name, coef):
    """Every structure (crossed, nested, by-arm, variances at zero), for the arm (x1) and a
    row-level covariate (x2)."""
    Xy, terms, used = _design(name)
    fit = fit_lmm(Xy, terms, used, coef=coef, df="kenward-roger")
    _check(fit.estimates, KR["simulated"][name]["terms"][f"x{coef}"])
    # the adjusted covariance is the one reported
    assert np.sqrt(fit.cov_beta[0, coef, coef]) == pytest.approx(fit.estimates.se[0], rel=1e-12)


@pytest.mark.parametrize("name", ["both_common", "partially_nested"])
@pytest.mark.parametrize("coef", [1, 2])
def test_one_term_engine_equals_pbkrtest(name, coef):
    Xy, ((_, ids),), used = _design(name)
    fit = fit_reml_masked(Xy, ids, used, coef=coef, df="kenward-roger")
    _check(fit.estimates, KR["simulated"][name]["terms"][f"x{coef}"])


def test_satterthwaite_is_unchanged_by_the_option():
    Xy, terms, used = _design("crossed")
    a = fit_lmm(Xy, terms, used).estimates
    b = fit_lmm(Xy, terms, used, df="satterthwaite").estimates
    ref = KR["simulated"]["crossed"]["terms"]["x1"]
    assert a.df[0] == b.df[0] == pytest.approx(ref["df_satterthwaite"], rel=1e-5)
    assert a.se[0] == pytest.approx(ref["se_satterthwaite"], rel=1e-6)


@pytest.mark.parametrize(("arm", "term"), [("small", "armsmall"), ("reg+A", "armreg+A")])
def test_school_trial_equals_pbkrtest(arm, term):
    """STAR, three arms in one fit: both engines and the ``lmm`` analysis."""
    data = read_trial_data(REAL / "star.csv", declared=Declarations(reference="reg"))
    ref = KR["real"]["star_three_arm"]["terms"][term]
    d = data.for_contrast(arm)
    a = ancova_arrays(d, "math")
    _check(fit_lmm(a.Xy, [("class", a.cluster)], a.mask, df="kenward-roger").estimates, ref)
    _check(fit_reml_masked(a.Xy, a.cluster, a.mask, df="kenward-roger").estimates, ref)
    _check(get_analysis("lmm").with_df("kenward-roger").estimate(d, "math"), ref)


def test_repeated_measures_on_btheb_equals_pbkrtest():
    from trialsim.analyse.repeated import repeated_measures

    declared = Declarations.from_options(covariate=("drug", "length"))
    data = read_trial_data(REAL / "btheb.csv", declared=declared)
    est = repeated_measures(data, "bdi", estimand="constant", df="kenward-roger")
    _check(est, KR["real"]["btheb_long"]["terms"]["treatmentBtheB"])


def _balanced(seed, n_rep=20, clusters=8, size=6):
    rng = np.random.default_rng(seed)
    n = clusters * size
    cluster = np.repeat(np.arange(clusters), size)
    arm = (cluster % 2).astype(float)
    u = rng.normal(scale=0.6, size=(n_rep, clusters))
    y = 0.4 * arm + u[:, cluster] + rng.normal(size=(n_rep, n))
    X = np.broadcast_to(np.column_stack([np.ones(n), arm]), (n_rep, n, 2))
    Xy = np.concatenate([X, y[..., None]], axis=-1)
    return Xy, cluster, y


def test_balanced_design_gives_containment_df_and_the_cluster_means_t_test():
    """8 clusters of 6: df = 8 - 2 and SE = the two-sample t test's on cluster means, for
    every replicate with an interior REML fit (both engines, batched)."""
    Xy, cluster, y = _balanced(3)
    used = np.ones(y.shape, dtype=bool)
    means = y.reshape(len(y), 8, 6).mean(axis=-1)
    treated, control = means[:, 1::2], means[:, 0::2]
    pooled = (treated.var(axis=1, ddof=1) + control.var(axis=1, ddof=1)) / 2
    se_means = np.sqrt(pooled * (1 / 4 + 1 / 4))
    for fit in (
        fit_reml_masked(Xy, cluster, used, df="kenward-roger"),
        fit_lmm(Xy, [("cluster", cluster)], used, df="kenward-roger"),
    ):
        e = fit.estimates
        interior = ~e.boundary
        assert interior.sum() >= 15
        np.testing.assert_allclose(e.df[interior], 6.0, rtol=1e-9)
        # the SE moves with the REML ratio, converged to a Newton step of ~1e-7 relative
        np.testing.assert_allclose(e.se[interior], se_means[interior], rtol=1e-7)


def test_batched_equals_one_at_a_time():
    """Replicates of different structures padded into one batch (the general engine)."""
    designs = [_design(n) for n in ("nested", "crossed", "crossed_null")]
    width = max(d[0].shape[1] for d in designs)
    Xy = np.zeros((3, width, 4))
    used = np.zeros((3, width), dtype=bool)
    ids = -np.ones((3, width, 3), dtype=np.int64)
    singles = []
    for r, (xy, terms, u) in enumerate(designs):
        n = xy.shape[1]
        Xy[r, :n] = xy[0]
        used[r, :n] = u[0]
        for k, (_, t) in enumerate(terms):
            ids[r, :n, k] = t[0]
        padded = [(f"t{k}", t) for k, (_, t) in enumerate(terms)]
        padded += [(f"t{k}", -np.ones_like(terms[0][1])) for k in range(len(terms), 3)]
        singles.append(fit_lmm(xy, padded, u, df="kenward-roger").estimates)
    batch = fit_lmm(
        Xy, [(f"t{k}", ids[..., k]) for k in range(3)], used, df="kenward-roger"
    ).estimates
    for r, one in enumerate(singles):
        assert batch.se[r] == pytest.approx(one.se[0], rel=1e-9)
        assert batch.df[r] == pytest.approx(one.df[0], rel=1e-8)


def test_kenward_roger_needs_reml_and_a_mixed_model():
    Xy, terms, used = _design("nested")
    with pytest.raises(ValueError, match="REML"):
        fit_lmm(Xy, terms, used, reml=False, df="kenward-roger")
    with pytest.raises(ValueError, match="choose one of satterthwaite, kenward-roger"):
        fit_lmm(Xy, terms, used, df="containment")
    with pytest.raises(ValueError, match="not a REML mixed model"):
        get_analysis("ancova").with_df("kenward-roger")


def test_cli_analyse_with_kenward_roger(tmp_path):
    """``trialsim analyse star.csv --analysis lmm --df kenward-roger`` reports pbkrtest's SE
    and df; a model that is not a REML mixed model refuses the option (exit 2)."""
    from click.testing import CliRunner

    from trialsim.cli import main

    runner = CliRunner()
    args = ["analyse", str(REAL / "star.csv"), "--outcome", "math", "--reference", "reg"]
    result = runner.invoke(
        main, [*args, "--analysis", "lmm", "--df", "kenward-roger", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["df_method"] == "kenward-roger"
    row = next(r for r in out["results"] if r["contrast"] == "small - reg")
    ref = KR["real"]["star_three_arm"]["terms"]["armsmall"]
    assert row["se"] == pytest.approx(ref["se_kr"], rel=RTOL)
    assert row["df"] == pytest.approx(ref["df_kr"], rel=RTOL)
    refused = runner.invoke(main, [*args, "--analysis", "ancova", "--df", "kenward-roger"])
    assert refused.exit_code == 2
    assert "not a REML mixed model" in refused.output
    analytic = runner.invoke(
        main,
        [
            "power",
            str(HERE.parent / "scenarios" / "sft-19m.toml"),
            "--method",
            "analytic",
            "--df",
            "kenward-roger",
        ],
    )
    assert analytic.exit_code == 2 and "applies to simulated analyses" in analytic.output


def test_power_and_sweep_take_the_option(tmp_path):
    """The simulated power path fits the same trials with either df (same estimates, the
    Kenward-Roger SEs); a sweep records the choice in its settings and refuses it for an
    analysis that is not a mixed model."""
    from trialsim.design.grid import parse_vary
    from trialsim.design.sweep import run_sweep
    from trialsim.power.simulation import simulate_operating_characteristics
    from trialsim.scenario import load_scenario

    path = HERE.parent / "scenarios" / "sft-19m.toml"
    s = load_scenario(path)
    runs = {}
    for df in ("satterthwaite", "kenward-roger"):
        tables = []
        simulate_operating_characteristics(s, ["mixed"], reps=40, seed=5, replicates=tables, df=df)
        runs[df] = tables[0]
    a, b = runs["satterthwaite"], runs["kenward-roger"]
    np.testing.assert_array_equal(a["estimate"], b["estimate"])
    assert not np.allclose(a["se"], b["se"], rtol=1e-6)
    np.testing.assert_allclose(a["se"], b["se"], rtol=0.05)
    axis = parse_vary("groups.icc_group=0.05,0.1")
    with pytest.raises(ValueError, match="not a REML mixed model"):
        run_sweep(
            path, [axis], reps=10, out=tmp_path / "x", analyses=("ancova",), df="kenward-roger"
        )
    result = run_sweep(
        path,
        [parse_vary("groups.icc_group=0.05")],
        reps=10,
        out=tmp_path / "kr",
        df="kenward-roger",
        plots=False,
    )
    assert result.cells_failed == 0
    settings = json.loads((tmp_path / "kr" / "sweep.json").read_text())["settings"]
    assert settings["df"] == "kenward-roger"
