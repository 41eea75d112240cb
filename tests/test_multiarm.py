"""Multi-arm trials: Holm and Dunnett adjustments (trialsim.analyse.multiplicity).

Oracles from ``Rscript scripts/formula_oracles.R`` (R 4.2.2, multcomp 1.4-22, mvtnorm 1.1-3,
lme4 1.1-31, lmerTest 3.1-3):

* anorexia (MASS), ``f <- lm(weight_post ~ treat + weight_pre, data = an)``;
  ``p.adjust(p, "holm")``; ``summary(glht(f, linfct = mcp(treat = "Dunnett")),
  test = adjusted("single-step"))`` and ``confint(glht(...))`` after ``set.seed(1)``. multcomp
  integrates with mvtnorm's default ``abseps = 0.001``: its numbers carry that error, so they are
  compared at 1e-3 absolute (p) and 1e-3 relative (CI); trialsim's integral is accurate to 1e-6.
* STAR (mlmRev), ``lmer(math ~ arm + school + sx + (1 | class))``: Holm; Dunnett with the
  contrasts' correlation from ``vcov`` and ``glht(..., df = 70)``.
* Dunnett's critical values (Dunnett 1955, JASA 50:1096-1121, Table 2, two-sided 95%, equal
  allocation: 2.57, 2.38 for two comparisons at 10 and 20 df; 2.76, 2.54 for three) and mvtnorm's
  ``qmvt(0.95, tail = "both.tails", df, corr)`` (abseps 1e-6).
"""

from pathlib import Path

import numpy as np
import pytest

from trialsim.analyse.multiplicity import dunnett, dunnett_critical, holm
from trialsim.analyse.registry import adjust_contrasts, estimate_contrasts, get_analysis
from trialsim.io import read_trial_data
from trialsim.io.declare import Declarations

REAL = Path(__file__).parent / "data" / "real"

ANOREXIA = dict(
    holm=[0.0339993147202627, 0.000378047596068492],
    dunnett_p=[0.0629390480323971, 0.000373235504642189],
    ci_low=[-0.18834313554725, 3.69652734374124],
    ci_high=[8.38247419169305, 13.6237290182421],
)
STAR = dict(
    holm=[0.00367445075225633, 0.359830108373474],  # small, reg+A
    dunnett_p=[0.00366773837607359, 0.556151796921661],
    corr=0.506133717436761,
)


def _equi(k: int, rho: float = 0.5) -> np.ndarray:
    return np.full((k, k), rho) + (1 - rho) * np.eye(k)


def test_holm_equals_r_p_adjust():
    # p.adjust(c(0.02, 0.0002, 0.03, 0.5), "holm") = 0.06 0.0008 0.06 0.5
    p = np.array([[0.02, 0.0002, 0.03, 0.5]])
    assert holm(p)[0] == pytest.approx([0.06, 0.0008, 0.06, 0.5], rel=1e-12)
    assert np.isnan(holm(np.array([[0.1, np.nan]]))[0, 1])


@pytest.mark.parametrize(
    ("k", "df", "table", "mvtnorm"),
    [
        (2, 10, 2.57, 2.56858697586191),
        (2, 20, 2.38, 2.37883787933545),
        (3, 10, 2.76, 2.75902684186543),
        (3, 20, 2.54, 2.54048527956443),
    ],
)
def test_dunnett_critical_values_equal_the_published_table(k, df, table, mvtnorm):
    c = dunnett_critical(_equi(k), df)
    assert round(c, 2) == table
    assert c == pytest.approx(mvtnorm, abs=5e-4)  # mvtnorm's own error is about 2e-4


def test_normal_limit_and_one_contrast():
    assert dunnett_critical(_equi(2), np.inf) == pytest.approx(2.2121, abs=2e-4)
    assert dunnett_critical(np.eye(1), 30) == pytest.approx(2.0422724563, rel=1e-9)  # t quantile


def test_three_arm_ancova_holm_and_dunnett_equal_multcomp():
    data = read_trial_data(REAL / "anorexia.csv", declared=Declarations(reference="Cont"))
    analysis = get_analysis("ancova")
    frame, lines = adjust_contrasts(
        analysis, data, "weight", estimate_contrasts(analysis, data, "weight")
    )
    assert any("Dunnett" in line and "residual df" in line for line in lines)
    assert list(frame["contrast"]) == ["CBT - Cont", "FT - Cont"]
    assert frame["p_holm"].to_numpy() == pytest.approx(ANOREXIA["holm"], rel=1e-7)
    assert frame["p_dunnett"].to_numpy() == pytest.approx(ANOREXIA["dunnett_p"], abs=1e-3)
    assert frame["ci_low_dunnett"].to_numpy() == pytest.approx(ANOREXIA["ci_low"], abs=1e-3)
    assert frame["ci_high_dunnett"].to_numpy() == pytest.approx(ANOREXIA["ci_high"], rel=1e-3)


def test_mixed_model_contrasts_dunnett_with_multcomp_df():
    """STAR: the joint REML fit's contrast correlation equals lmer's vcov; with multcomp's df
    (70) the adjusted p-values equal glht's."""
    data = read_trial_data(
        REAL / "star.csv", declared=Declarations.from_options(reference="reg", covariate=("sx",))
    )
    analysis = get_analysis("mixed-cluster")
    fit, columns = analysis.joint_fit(data.for_contrast("small"), "math")
    small, reg_a = (
        columns[data.structure.arms.index("small") - 1],
        columns[data.structure.arms.index("reg+A") - 1],
    )
    cov = fit.cov_beta[0]
    corr = cov[small, reg_a] / np.sqrt(cov[small, small] * cov[reg_a, reg_a])
    assert corr == pytest.approx(STAR["corr"], rel=1e-5)
    frame = estimate_contrasts(analysis, data, "math")
    rows = {c: frame[frame["contrast"] == c].iloc[0] for c in frame["contrast"]}
    est = np.array([[rows["small - reg"]["estimate"], rows["reg+A - reg"]["estimate"]]])
    se = np.array([[rows["small - reg"]["se"], rows["reg+A - reg"]["se"]]])
    p, _, _ = dunnett(est, se, np.array([[1, corr], [corr, 1]]), np.array([70.0]))
    assert p[0] == pytest.approx(STAR["dunnett_p"], abs=2e-4)
    frame, _ = adjust_contrasts(analysis, data, "math", frame)
    holm_by = dict(zip(frame["contrast"], frame["p_holm"], strict=True))
    assert [holm_by["small - reg"], holm_by["reg+A - reg"]] == pytest.approx(STAR["holm"], rel=1e-5)


def test_dunnett_controls_the_familywise_error_under_the_global_null():
    """Three arms against a control, n = 8 per arm, normal data, no effect: the critical value
    for the equal-allocation correlation 1/2 and 28 residual df rejects any contrast in 5% of
    40 000 simulated trials (within 3 Monte Carlo SEs, 0.0033), and Holm in at most 5%."""
    rng = np.random.default_rng(20161)
    reps, n, k = 40_000, 8, 3
    y = rng.normal(size=(reps, k + 1, n))
    means = y.mean(axis=2)
    s2 = ((y - means[..., None]) ** 2).sum(axis=(1, 2)) / ((k + 1) * (n - 1))
    t = (means[:, 1:] - means[:, :1]) / np.sqrt(s2[:, None] * 2 / n)
    c = dunnett_critical(_equi(k), (k + 1) * (n - 1))
    fwer = (np.abs(t) > c).any(axis=1).mean()
    mcse = np.sqrt(0.05 * 0.95 / reps)
    assert abs(fwer - 0.05) < 3 * mcse
    from scipy import stats

    p = 2 * stats.t.sf(np.abs(t), (k + 1) * (n - 1))
    assert (holm(p) < 0.05).any(axis=1).mean() < 0.05 + 3 * mcse


def test_two_arm_output_has_no_adjustment():
    data = read_trial_data(REAL / "btheb.csv")
    analysis = get_analysis("ancova")
    frame = estimate_contrasts(analysis, data, "bdi")
    out, lines = adjust_contrasts(analysis, data, "bdi", frame)
    assert lines == [] and "p_holm" not in out


def test_every_joint_mixed_analysis_gets_dunnett():
    """The general-engine ``lmm`` analysis (one term here: the class) gives the same Dunnett
    adjustment as ``mixed-cluster``; an analysis that is not one Gaussian model gets Holm only."""
    data = read_trial_data(REAL / "star.csv", declared=Declarations(reference="reg"))
    out = {}
    for name in ("lmm", "mixed-cluster", "cr2"):
        analysis = get_analysis(name)
        frame, lines = adjust_contrasts(
            analysis, data, "math", estimate_contrasts(analysis, data, "math")
        )
        out[name] = (frame, lines)
    assert out["lmm"][0]["p_dunnett"].to_numpy() == pytest.approx(
        out["mixed-cluster"][0]["p_dunnett"].to_numpy(), rel=1e-5
    )
    assert "p_dunnett" not in out["cr2"][0] and "Holm only" in out["cr2"][1][-1]
