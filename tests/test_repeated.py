"""The repeated-measures analysis (trialsim.analyse.repeated) against lmerTest.

Oracles (REML, Satterthwaite df; R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, fitted with
``control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))``):

* BtheB (HSAUR3), long over months 2, 3, 5, 8 (``bt_long`` of scripts/real_data.R):
  constant effect ``lmer(bdi ~ bdi.pre + factor(month) + treatment + drug + length +
  (1 | participant))`` from tests/data/real/oracles.json; last visit and average from
  ``Rscript scripts/formula_oracles.R`` (calls below).
* A simulated SFT trial (``trialsim simulate scenarios/sft-19m.toml --reps 1 --seed 7
  --outcomes psp``, frozen in tests/data/models/sft_repeated.csv): treatment groups in one arm,
  municipalities as strata, visits at 9 and 15 months; R call in the test's docstring.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trialsim.analyse.repeated import repeated_measures, repeated_spec
from trialsim.cli import main
from trialsim.io import read_trial_data
from trialsim.io.declare import Declarations

HERE = Path(__file__).parent
REAL = HERE / "data" / "real"
ORACLES = json.loads((REAL / "oracles.json").read_text())

# Rscript scripts/formula_oracles.R (multcomp 1.4-22, mvtnorm 1.1-3 for the other entries)
# last: lmer(bdi ~ bdi.pre + treatment * relevel(factor(month), ref = "8") + drug + length +
#   (1 | participant), data = bt_long)
# average: the same with factor(month) in contr.sum(4) coding (treatment = mean of the 4
#   visit effects)
BTHEB_LAST = dict(estimate=-0.040049691187594, se=2.20853545605038, df=195.583068898034)
BTHEB_AVERAGE = dict(estimate=-1.96030761614593, se=1.74620020057208, df=94.8682683987893)


@pytest.fixture(scope="module")
def btheb():
    declared = Declarations.from_options(covariate=("drug", "length"))
    return read_trial_data(REAL / "btheb.csv", declared=declared)


def _check(est, ref):
    assert est.estimate[0] == pytest.approx(ref["estimate"], rel=1e-6)
    assert est.se[0] == pytest.approx(ref["se"], rel=1e-6)
    assert est.df[0] == pytest.approx(ref["df"], rel=1e-5)


def test_constant_effect_equals_the_published_repeated_measures_model(btheb):
    """``--estimand constant`` is lmerTest's model with one treatment effect for all visits
    (estimate -2.3559, SE 1.7097, df 92.197)."""
    est = repeated_measures(btheb, "bdi", estimand="constant")
    _check(est, ORACLES["btheb"]["long_repeated"]["refit_tight"]["terms"]["treatmentBtheB"])
    assert est.variance["participant"][0] == pytest.approx(
        ORACLES["btheb"]["long_repeated"]["refit_tight"]["var_group"], rel=1e-5
    )


@pytest.mark.parametrize(("estimand", "ref"), [("last", BTHEB_LAST), ("average", BTHEB_AVERAGE)])
def test_effect_at_the_last_visit_and_averaged_equal_lmertest(btheb, estimand, ref):
    _check(repeated_measures(btheb, "bdi", estimand=estimand), ref)


def test_participant_and_treatment_group_intercepts_equal_lmertest():
    """Partially nested SFT trial, every post-baseline visit (399 rows)::

        lmer(psp ~ arm + baseline + factor(month) + municipality + (1 | participant)
             + (0 + treated | group), data = long)          # constant: 5.24363785161755 ...
        lmer(psp ~ arm * relevel(factor(month), ref = "15") + baseline + municipality
             + (1 | participant) + (0 + treated | group))     # last visit

    (controls in a dummy group 'none' with treated = 0)."""
    data = read_trial_data(HERE / "data" / "models" / "sft_repeated.csv")
    spec = repeated_spec(data.structure, "psp", "constant")
    assert spec.lme4() == (
        "psp ~ arm + baseline + factor(visit) + municipality + (1 | participant) "
        "+ (0 + treated | group)"
    )
    est = repeated_measures(data, "psp", estimand="constant")
    _check(est, dict(estimate=5.24363785161755, se=1.5939003959309, df=40.374807662159))
    assert est.variance["group"][0] == pytest.approx(23.8170492125642, rel=1e-5)
    assert est.variance["participant"][0] == pytest.approx(62.0315095974804, rel=1e-5)
    assert est.variance["residual"][0] == pytest.approx(41.8567651425345, rel=1e-6)
    last = repeated_measures(data, "psp", estimand="last")
    _check(last, dict(estimate=4.19590930102005, se=1.82637624304944, df=68.016870445014))


def test_one_visit_data_are_refused(btheb):
    star = read_trial_data(REAL / "star.csv", declared=Declarations(reference="reg"))
    with pytest.raises(ValueError, match="two or more visits"):
        repeated_measures(star, "math")
    with pytest.raises(ValueError, match="--estimand"):
        repeated_spec(btheb.structure, "bdi", "first")


def test_cli_repeated_with_estimand_prints_the_model():
    result = CliRunner().invoke(
        main,
        [
            "analyse",
            str(REAL / "btheb.csv"),
            "--covariate",
            "drug",
            "--covariate",
            "length",
            "--analysis",
            "repeated",
            "--estimand",
            "constant",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (
        out["model"] == "bdi ~ arm + baseline + factor(visit) + drug + length + (1 | participant)"
    )
    row = out["results"][0]
    assert row["analysis"] == "repeated(constant)"
    assert row["estimate"] == pytest.approx(-2.35588889843186, rel=1e-6)
