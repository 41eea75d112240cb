"""Analytic IRGT power of a scenario against the simulated default analysis, cell by cell.

Oracle: the project's own simulation of the same world (SFT scenario, assessors blinded,
dropout MCAR, trainer ICC 0) analysed by the default mixed model (REML, Satterthwaite df),
on a fixed seed. The effect of each cell is set so that the analytic power is 0.7, where a
disagreement shows most. Tolerance: the goal 0.015 plus 3 Monte Carlo SEs of the simulated
power (``sqrt(p (1 - p) / reps)``); the analytic side has no Monte Carlo error (its design
draws use a fixed seed). ``scripts/power_grid.py`` prints the full 144-cell grid
(``results/power_grid.txt``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from trialsim.power.analytic import power_irgt

ROOT = Path(__file__).resolve().parent.parent


def _grid():
    spec = importlib.util.spec_from_file_location("power_grid", ROOT / "scripts" / "power_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(cell, reps):
    row = _grid().run_cell(cell, reps, 2024)
    tolerance = 0.015 + 3.0 * row["mcse"]
    assert abs(row["diff"]) <= tolerance, (cell, row)
    return row


# (completion, group ICC, treatment groups asked for, group-size CV, dose-response); 8 asked
# for gives 9 (one per municipality): the small, heavy-attrition corner is the first cell
DEFAULT_SLICE = [
    (0.3, 0.05, 8, 0.25, "none"),
    (0.5, 0.15, 8, 0.5, "linear"),
    (1.0, 0.05, 27, 0.0, "none"),
]


@pytest.mark.parametrize("cell", DEFAULT_SLICE, ids=lambda c: "-".join(map(str, c)))
def test_analytic_power_matches_simulation_on_a_slice(cell):
    _check(cell, reps=1000)


SLOW_SLICE = [
    (c, i, g, v, d)
    for c in (0.3, 0.5, 0.7, 1.0)
    for i in (0.0, 0.15)
    for g in (8, 27, 60)
    for v, d in ((0.0, "linear"), (0.5, "none"))
]


@pytest.mark.slow
@pytest.mark.parametrize("cell", SLOW_SLICE, ids=lambda c: "-".join(map(str, c)))
def test_analytic_power_matches_simulation_on_the_grid(cell):
    _check(cell, reps=4000)


def test_reml_model_tends_to_the_textbook_formula_in_large_trials():
    # many groups of many completers: the estimated variances are nearly exact, the group
    # variance is never at its boundary and the information barely varies, so the
    # small-sample model gives the textbook power
    common = dict(n_groups=400, group_size=30, n_control=12000, icc=0.05, dropout=0.2)
    effect = np.array([0.03, 0.05, 0.07])
    known = power_irgt(effect, **common)
    reml = power_irgt(effect, variance_estimation="reml", n_fixed=3, **common)
    np.testing.assert_allclose(reml, known, atol=0.003)


def test_reml_model_is_below_the_textbook_formula_in_small_trials():
    # 8 groups of 3 completers: boundary fits, an estimated residual variance and a varying
    # design all cost power
    common = dict(
        n_groups=8,
        group_size=6,
        n_control=48,
        icc=0.05,
        dropout=0.5,
        completers="binomial",
        n_strata=8,
    )
    known = power_irgt(0.9, **common)  # 0.724
    reml = power_irgt(0.9, variance_estimation="reml", n_fixed=10, info_cv=0.2, **common)
    assert known - 0.08 < reml < known - 0.01  # 0.687


def test_reml_model_checks_its_options():
    with pytest.raises(ValueError, match="variance_estimation must be"):
        power_irgt(0.4, n_groups=10, group_size=8, n_control=80, icc=0.05, variance_estimation="x")
    with pytest.raises(ValueError, match="info_cv must be"):
        power_irgt(
            0.4,
            n_groups=10,
            group_size=8,
            n_control=80,
            icc=0.05,
            variance_estimation="reml",
            info_cv=-1,
        )


def test_design_realisations_of_a_complete_balanced_design_do_not_vary():
    from trialsim.power.from_scenario import design_realisations

    p = dict(dropout=0.0, sd=1.0, treated_var=0.0, icc=0.05, group_size=6.0)
    out = design_realisations(np.array([12.0, 12.0]), np.array([12.0, 12.0]), 6.0, 0.0, p)
    assert out["info_cv"] < 1e-9
    assert out["informative_share"] == 1.0
    heavy = design_realisations(
        np.array([12.0, 12.0]), np.array([12.0, 12.0]), 6.0, 0.0, dict(p, dropout=0.7)
    )
    # P(no completer in a group of 6) = 0.7**6 = 0.118; a municipality's 12 controls all
    # lost: 0.7**12 = 0.014
    assert heavy["informative_share"] == pytest.approx((1 - 0.7**6) * (1 - 0.7**12), abs=0.01)
    assert 0.05 < heavy["info_cv"] < 0.5
