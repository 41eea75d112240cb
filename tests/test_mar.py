"""The ``mar`` analysis (trialsim.analyse.mar): the repeated-measures model plus attendance.

Oracle: lmerTest 3.1.3 / pbkrtest 0.5.2 (R 4.2.2, lme4 1.1.31) on a simulated SFT trial with
attendance, tests/data/models/sft_repeated.csv (``trialsim simulate scenarios/sft-19m.toml
--reps 1 --seed 7 --outcomes psp``), printed by ``Rscript scripts/mar_oracle.R``::

    lmer(psp ~ arm * relevel(factor(month), ref = "15") + baseline + municipality
         + attendance_c:relevel(factor(month), ref = "15")
         + (1 | participant) + (0 + treated | group), data = long, REML = TRUE,
         control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12)))

with ``attendance_c`` the attended fraction minus its arm mean over participants with a
baseline (control 0, treatment 0.580392156862745), controls in a dummy group with treated = 0.
Without attendance records ``mar`` is ``repeated`` exactly.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trialsim.analyse.mar import mar_arrays, mar_repeated
from trialsim.analyse.registry import get_analysis
from trialsim.cli import main
from trialsim.io import read_trial_data
from trialsim.io.declare import Declarations

HERE = Path(__file__).parent
REAL = HERE / "data" / "real"

# Rscript scripts/mar_oracle.R (399 rows)
LMERTEST = dict(
    estimate=3.53163255782109,
    se=1.76359106570349,
    df=73.7887808090601,
    se_kr=1.76776507966141,
    df_kr=73.0453494131999,
    variance={"participant": 54.5900082575606, "group": 20.1370949348716},
    residual=41.9277231280541,
)


@pytest.fixture(scope="module")
def sft():
    return read_trial_data(HERE / "data" / "models" / "sft_repeated.csv")


@pytest.fixture(scope="module")
def btheb():
    declared = Declarations.from_options(covariate=("drug", "length"))
    return read_trial_data(REAL / "btheb.csv", declared=declared)


def test_mar_with_attendance_equals_lmertest(sft):
    a = mar_arrays(sft, "psp")
    assert int(a.used.sum()) == 399
    assert {"attendance:visit1", "attendance:visit2"} <= set(a.columns)
    est = get_analysis("mar").estimate(sft, "psp")
    assert est.estimate[0] == pytest.approx(LMERTEST["estimate"], rel=1e-6)
    assert est.se[0] == pytest.approx(LMERTEST["se"], rel=1e-6)
    assert est.df[0] == pytest.approx(LMERTEST["df"], rel=1e-5)
    for term, value in LMERTEST["variance"].items():
        assert est.variance[term][0] == pytest.approx(value, rel=1e-5)
    assert est.variance["residual"][0] == pytest.approx(LMERTEST["residual"], rel=1e-6)
    kr = get_analysis("mar").with_df("kenward-roger").estimate(sft, "psp")
    assert kr.estimate[0] == pytest.approx(LMERTEST["estimate"], rel=1e-6)
    assert kr.se[0] == pytest.approx(LMERTEST["se_kr"], rel=1e-6)
    assert kr.df[0] == pytest.approx(LMERTEST["df_kr"], rel=1e-5)


def test_attendance_changes_the_estimate_when_recorded(sft):
    mar = mar_repeated(sft, "psp")
    repeated = get_analysis("repeated").estimate(sft, "psp")
    assert abs(mar.estimate[0] - repeated.estimate[0]) > 0.1


def test_without_attendance_mar_is_repeated_exactly(sft, btheb):
    """BtheB records no sessions; the SFT trial with its attendance columns emptied."""
    no_sessions = replace(
        sft,
        sessions_offered=np.zeros_like(sft.sessions_offered),
        sessions_attended=np.zeros_like(sft.sessions_attended),
    )
    for data, outcome in ((btheb, "bdi"), (no_sessions, "psp")):
        mar = get_analysis("mar").estimate(data, outcome)
        rep = get_analysis("repeated").estimate(data, outcome)
        for field in ("estimate", "se", "df", "ci_low", "ci_high"):
            np.testing.assert_array_equal(getattr(mar, field), getattr(rep, field))
        assert np.isfinite(mar.estimate).all()


def test_cli_mar_runs_without_attendance_and_never_returns_nan(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        main,
        [
            "analyse",
            str(REAL / "btheb.csv"),
            "--outcome",
            "bdi",
            "--covariate",
            "drug",
            "--covariate",
            "length",
            "--better",
            "lower",
            "--analysis",
            "mar",
            "--format",
            "csv",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "nan" not in ok.stdout.lower()
    one_visit = runner.invoke(
        main,
        [
            "analyse",
            str(REAL / "anorexia.csv"),
            "--reference",
            "Cont",
            "--analysis",
            "mar",
            "--format",
            "csv",
        ],
    )  # baseline and one follow-up, no attendance: the repeated model on one visit
    assert one_visit.exit_code == 0, one_visit.output
    assert "nan" not in one_visit.stdout.lower()
