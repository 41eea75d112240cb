"""Real trials read as their evaluators would bring them, analysed by the default analysis the
structure calls for, against R.

Oracles: ``tests/data/real/oracles.json``, made by ``Rscript scripts/real_data.R`` (R 4.2.2,
lme4 1.1-31, lmerTest 3.1-3; the calls are in the file and in ``tests/data/real/README.md``).
``stats::lm`` results are exact, so they are compared at 1e-9; ``lmerTest`` results are compared
against R's tightly converged refit (``refit_tight``) at 1e-6 relative for estimates and SEs
and 1e-5 for Satterthwaite df (R's own default and tight fits differ by up to 5e-8).
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from trialsim.analyse.registry import default_analysis, get_analysis
from trialsim.cli import main
from trialsim.io import read_trial_data
from trialsim.io.declare import Declarations

REAL = Path(__file__).parent / "data" / "real"
ORACLES = json.loads((REAL / "oracles.json").read_text())


def _analyse(*args) -> list[dict]:
    result = CliRunner().invoke(main, ["analyse", *map(str, args), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_three_arm_anorexia_trial_equals_r_ancova():
    """MASS::anorexia: three arms (Cont, CBT, FT), wide pre/post weights. The default is the
    ANCOVA (no groups, no clusters); both contrasts equal R's
    ``lm(Postwt ~ Treat + Prewt)`` with Cont as reference."""
    out = _analyse(REAL / "anorexia.csv", "--reference", "Cont")
    assert out["analysis"] == "ancova"
    assert "arms: Cont (reference), CBT, FT" in "; ".join(out["structure"])
    terms = ORACLES["anorexia"]["ancova"]["terms"]
    rows = {r["contrast"]: r for r in out["results"]}
    for arm in ("CBT", "FT"):
        row, oracle = rows[f"{arm} - Cont"], terms[f"treat{arm}"]
        assert row["estimate"] == pytest.approx(oracle["estimate"], rel=1e-9)
        assert row["se"] == pytest.approx(oracle["se"], rel=1e-9)
        assert row["df"] == oracle["df"]
        assert row["p_value"] == pytest.approx(oracle["p"], rel=1e-7)
        assert [row["ci_low"], row["ci_high"]] == pytest.approx(oracle["ci95"], rel=1e-9)


@pytest.mark.parametrize(("visits", "key"), [(5, "ancova_8m"), (2, "ancova_2m")])
def test_wide_repeated_measures_trial_with_covariates_equals_r(visits, key):
    """HSAUR3::BtheB: wide bdi.pre, bdi.2m ... bdi.8m with categorical covariates drug and
    length, as published: ``lm(bdi.8m ~ treatment + bdi.pre + drug + length)`` (TAU
    reference) at 8 months (the last visit) and at 2 months."""
    declared = Declarations.from_options(covariate=("drug", "length"), better=("bdi=lower",))
    data = read_trial_data(REAL / "btheb.csv", declared=declared)
    st = data.structure
    assert st.arms == ("TAU", "BtheB") and st.visit_months == (0.0, 2.0, 3.0, 5.0, 8.0)
    assert st.covariates["drug"].levels == ("No", "Yes")
    if visits < data.n_visits:  # analyse an earlier visit: keep the visits up to it
        data = replace(
            data,
            structure=replace(st, visit_months=st.visit_months[:visits]),
            outcomes={"bdi": data.outcomes["bdi"][:, :, :visits]},
            observed=data.observed[:, :, :visits],
            assessor_blinded=data.assessor_blinded[:, :, :visits],
        )
    choice = default_analysis(data.structure, "bdi")
    assert choice.name == "ancova"
    est = get_analysis(choice.name).estimate(data, "bdi")
    oracle = ORACLES["btheb"][key]["terms"]["treatmentBtheB"]
    assert est.estimate[0] == pytest.approx(oracle["estimate"], rel=1e-9)
    assert est.se[0] == pytest.approx(oracle["se"], rel=1e-9)
    assert est.df[0] == oracle["df"]


def test_wide_file_from_the_command_line():
    out = _analyse(
        REAL / "btheb.csv", "--outcome", "bdi", "--covariate", "drug", "--covariate", "length"
    )
    oracle = ORACLES["btheb"]["ancova_8m"]["terms"]["treatmentBtheB"]
    assert out["results"][0]["estimate"] == pytest.approx(oracle["estimate"], rel=1e-9)


def _star(*extra):
    return _analyse(REAL / "star.csv", "--outcome", "math", "--reference", "reg", *extra)


@pytest.mark.parametrize(
    ("extra", "key"), [((), "three_arm"), (("--covariate", "sx"), "three_arm_sx")]
)
def test_school_trial_with_classes_in_every_arm_equals_lmertest(extra, key):
    """mlmRev::star (Tennessee STAR, kindergarten, 24 schools): pupils in classes of three types
    randomised within schools, post-test only. The structure: school strata, classes (one
    class type each) as the randomised units in every arm; the default analysis is lmerTest's
    ``lmer(math ~ arm + factor(school) [+ sx] + (1 | class))`` with Satterthwaite df."""
    out = _star(*extra)
    assert out["analysis"] == "mixed-cluster"
    assert "visits (months): 0; no baseline (post-test only)" in out["structure"]
    oracle = ORACLES["star"][key]["refit_tight"]
    rows = {r["contrast"]: r for r in out["results"]}
    for arm, term in (("small", "armsmall"), ("reg+A", "armreg+A")):
        row, ref = rows[f"{arm} - reg"], oracle["terms"][term]
        assert row["estimate"] == pytest.approx(ref["estimate"], rel=1e-6)
        assert row["se"] == pytest.approx(ref["se"], rel=1e-6)
        assert row["df"] == pytest.approx(ref["df"], rel=1e-5)
        assert row["var_residual"] == pytest.approx(oracle["sigma2_residual"], rel=1e-6)
        assert row["var_cluster"] == pytest.approx(oracle["var_group"], rel=1e-5)


def test_two_arm_comparison_of_the_school_trial_equals_lmertest_on_the_subset():
    """The two-arm subset (small vs regular classes): R fits the subset; trialsim's two-arm
    view of the three-arm trial leaves the other arm's pupils out the same way."""
    data = read_trial_data(REAL / "star.csv", declared=Declarations(reference="reg"))
    two = data.for_contrast("small").two_arms()
    est = get_analysis("mixed-cluster").run(two, "math")
    ref = ORACLES["star"]["two_arm"]["refit_tight"]["terms"]["armsmall"]
    assert est.estimate[0] == pytest.approx(ref["estimate"], rel=1e-6)
    assert est.se[0] == pytest.approx(ref["se"], rel=1e-6)
    assert est.df[0] == pytest.approx(ref["df"], rel=1e-5)
