"""lme4-style formulas (trialsim.analyse.formula) on real trials, against R.

Oracles: ``tests/data/real/oracles.json`` (``Rscript scripts/real_data.R``: R 4.2.2, lme4
1.1-31, lmerTest 3.1-3). ``lm`` numbers are compared at 1e-9, lmerTest's tight refit at 1e-6
(estimates, SEs) and 1e-5 (Satterthwaite df), as in tests/test_real_trials.py.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trialsim.analyse.fitting import fit_terms
from trialsim.analyse.formula import model_arrays, parse_formula
from trialsim.cli import main
from trialsim.io.declare import Declarations
from trialsim.io.load import check_trial_file

REAL = Path(__file__).parent / "data" / "real"
ORACLES = json.loads((REAL / "oracles.json").read_text())


def _read(name, **options):
    table = check_trial_file(REAL / name, declared=Declarations.from_options(**options))
    return table.data, table.names


def _fit(data, names, text, arm=None):
    spec = parse_formula(text, data.structure, names)
    if arm is not None:
        data = data.for_contrast(arm)
    a = model_arrays(data, spec)
    return spec, a, fit_terms(a.Xy, a.used, a.terms, coef=a.coef)


@pytest.fixture(scope="module")
def btheb():
    return _read("btheb.csv", covariate=("drug", "length"))


def test_ancova_formula_with_the_files_column_names_equals_lm(btheb):
    """``lm(bdi.8m ~ treatment + bdi.pre + drug + length)``: the file's arm column
    (treatment), the outcome's baseline column (bdi.pre) and two categorical covariates as R's
    treatment contrasts (No, <6m the references)."""
    spec, a, fit = _fit(*btheb, "bdi ~ treatment + bdi.pre + drug + length")
    assert a.columns == ("intercept", "treatment", "bdi.pre", "drug[Yes]", "length[>6m]")
    assert spec.lme4() == "bdi ~ arm + bdi.pre + drug + length"
    oracle = ORACLES["btheb"]["ancova_8m"]
    est = fit.estimates
    assert est.estimate[0] == pytest.approx(oracle["terms"]["treatmentBtheB"]["estimate"], rel=1e-9)
    assert est.se[0] == pytest.approx(oracle["terms"]["treatmentBtheB"]["se"], rel=1e-9)
    assert est.df[0] == oracle["df_residual"]
    # no centring: the intercept and the baseline slope are R's
    assert fit.beta[0, 0] == pytest.approx(oracle["terms"]["(Intercept)"]["estimate"], rel=1e-9)
    assert fit.beta[0, 2] == pytest.approx(oracle["terms"]["bdi.pre"]["estimate"], rel=1e-9)


def test_month_factor_makes_a_repeated_measures_model_equal_to_lmertest(btheb):
    """``lmer(bdi ~ bdi.pre + factor(month) + treatment + drug + length + (1 | participant))``
    on the long BtheB data (280 rows of 97 participants), REML, Satterthwaite df."""
    text = "bdi ~ bdi.pre + factor(month) + treatment + drug + length + (1 | participant)"
    spec, a, fit = _fit(*btheb, text)
    assert spec.repeated and a.n_visits == 4 and int(a.used.sum()) == 280
    assert "factor(month)[8]" in a.columns
    oracle = ORACLES["btheb"]["long_repeated"]["refit_tight"]
    ref = oracle["terms"]["treatmentBtheB"]
    est = fit.estimates
    assert est.estimate[0] == pytest.approx(ref["estimate"], rel=1e-6)
    assert est.se[0] == pytest.approx(ref["se"], rel=1e-6)
    assert est.df[0] == pytest.approx(ref["df"], rel=1e-5)
    assert est.variance["participant"][0] == pytest.approx(oracle["var_group"], rel=1e-5)
    assert est.variance["residual"][0] == pytest.approx(oracle["sigma2_residual"], rel=1e-6)


def test_school_trial_formula_with_site_factor_and_class_intercept_equals_lmertest():
    """``lmer(math ~ arm + factor(school) + sx + (1 | class))`` on STAR (three arms): each
    arm's contrast with the joint fit; the file's names (school, class, sx)."""
    data, names = _read("star.csv", reference="reg", covariate=("sx",))
    ref = ORACLES["star"]["three_arm_sx"]["refit_tight"]
    for arm, term in (("small", "armsmall"), ("reg+A", "armreg+A")):
        spec, a, fit = _fit(data, names, "math ~ arm + C(school) + sx + (1 | class)", arm)
        assert sum(c.startswith("C(school)[") for c in a.columns) == 23
        est = fit.estimates
        assert est.estimate[0] == pytest.approx(ref["terms"][term]["estimate"], rel=1e-6)
        assert est.se[0] == pytest.approx(ref["terms"][term]["se"], rel=1e-6)
        assert est.df[0] == pytest.approx(ref["terms"][term]["df"], rel=1e-5)
        assert est.variance["class"][0] == pytest.approx(ref["var_group"], rel=1e-5)
    assert spec.lme4() == "math ~ arm + C(school) + sx + (1 | class)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bdi ~ treatment + (bdi.pre | participant)", "random slopes"),
        ("bdi ~ treatment * drug", "interactions"),
        ("bdi ~ treatment + weight", "unknown name 'weight'"),
        ("bdi ~ drug + length", "no arm term"),
        ("bdi treatment", "no '~'"),
        ("score ~ treatment", "not an outcome"),
        ("bdi ~ treatment + log(bdi.pre)", "not supported"),
        ("bdi ~ treatment + (1 | group)", "no delivery groups"),
        ("bdi ~ treatment + drug - 1", "without an intercept"),
    ],
)
def test_bad_formulas_are_refused_with_one_line(btheb, text, message):
    data, names = btheb
    with pytest.raises(ValueError, match=message) as info:
        parse_formula(text, data.structure, names)
    assert "\n" not in str(info.value)


def test_several_random_terms_without_an_engine_are_refused_clearly(monkeypatch):
    """Crossed terms need the general engine; without it the model is refused in one line."""
    import trialsim.analyse.fitting as fitting

    monkeypatch.setattr(fitting, "_general_engine", lambda: None)
    rng = np.random.default_rng(1)
    n = 40
    Xy = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=n)])[None]
    a, b = rng.integers(0, 4, (1, n)), rng.integers(0, 5, (1, n))  # crossed
    with pytest.raises(ValueError, match="general mixed-model engine"):
        fit_terms(Xy, np.ones((1, n), bool), (("a", a), ("b", b)))


def test_two_nested_terms_use_the_nested_engine_and_identical_partitions_are_refused():
    """Participants within groups: the nested REML engine (also when the general engine is
    installed: the same fit, faster); two terms splitting the rows identically are refused."""
    rng = np.random.default_rng(2)
    n_groups, per = 12, 6
    group = np.repeat(np.arange(n_groups), per)
    y = rng.normal(size=group.size) + rng.normal(size=n_groups)[group]
    Xy = np.column_stack([np.ones(group.size), group % 2, y])[None]
    used = np.ones((1, group.size), bool)
    participant = np.arange(group.size) // 2  # pairs of rows: nested in groups
    fit = fit_terms(Xy, used, (("participant", participant[None]), ("group", group[None])))
    assert fit.engine == "reml-nested"
    assert set(fit.estimates.variance) == {"residual", "group", "participant"}
    with pytest.raises(ValueError, match="split the rows identically"):
        fit_terms(Xy, used, (("a", group[None]), ("b", group[None] + 5)))


def _cli(*args):
    return CliRunner().invoke(main, ["analyse", *map(str, args)])


def test_cli_formula_reads_unknown_names_as_covariates_and_prints_the_model():
    """``--formula`` alone: drug and length (not declared) are read as covariates; the JSON
    carries the model in lme4 notation."""
    result = _cli(
        REAL / "btheb.csv",
        "--formula",
        "bdi ~ treatment + bdi.pre + drug + length",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["analysis"] == "formula"
    assert out["model"] == "bdi ~ arm + bdi.pre + drug + length"
    oracle = ORACLES["btheb"]["ancova_8m"]["terms"]["treatmentBtheB"]
    assert out["results"][0]["estimate"] == pytest.approx(oracle["estimate"], rel=1e-9)


def test_cli_default_analysis_prints_its_lme4_formula():
    result = _cli(REAL / "anorexia.csv", "--reference", "Cont", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "weight ~ arm + baseline"


def test_cli_bad_formula_is_one_line_exit_2():
    result = _cli(REAL / "btheb.csv", "--formula", "bdi ~ treatment + (bdi.pre | participant)")
    assert result.exit_code == 2
    assert result.output.startswith("error: --formula") and result.output.count("\n") == 1


def test_school_and_class_intercepts_nested_equal_lmertest():
    """``lmer(math ~ arm + sx + (1 | school) + (1 | class))`` (scripts/formula_oracles.R; R
    4.2.2, lme4 1.1-31, lmerTest 3.1-3, bobyqa rhoend 1e-12): the site as a random term, classes
    nested in schools (the nested engine)."""
    data, names = _read("star.csv", reference="reg", covariate=("sx",))
    text = "math ~ arm + sx + (1 | school) + (1 | class)"
    _, _, fit = _fit(data, names, text, "small")
    est = fit.estimates
    assert est.estimate[0] == pytest.approx(15.3254803144126, rel=1e-6)
    assert est.se[0] == pytest.approx(4.87619697112858, rel=1e-6)
    assert est.df[0] == pytest.approx(76.5450748982034, rel=1e-5)
    assert est.variance["school"][0] == pytest.approx(397.79087599056, rel=1e-5)
    assert est.variance["class"][0] == pytest.approx(300.561073372152, rel=1e-5)
    assert est.variance["residual"][0] == pytest.approx(1604.38289149196, rel=1e-6)
