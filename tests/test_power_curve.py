"""Power curves over the sample size (trialsim.power.curve).

Oracles: the sizes are checked against the scenario they produce (participants summed,
groups counted by the analytic mapping); the read-off is linear interpolation checked by
hand; the simulated curve of an unbiased scenario with 80 % completion (where the closed form
and the simulation agree, see tests/test_power_from_scenario.py) lies within 3 Monte Carlo
SEs of the analytic curve.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import SFT
from trialsim.cli import main
from trialsim.power.curve import crossing, power_curve, size_overrides, with_size
from trialsim.power.from_scenario import analytic_parameters

RAW = tomllib.loads(SFT.read_text())


def test_sizes_produce_the_scenario_asked_for():
    s = with_size(RAW, "n_participants", 500)
    assert abs(s.n_participants - 500) <= 5  # rounded per municipality
    _, p = analytic_parameters(with_size(RAW, "n_groups", 40))
    assert abs(p["n_groups"] - 40) <= 1
    g0 = analytic_parameters(with_size(RAW, "group_size", 6.3))[1]["n_groups"]
    g8 = with_size(RAW, "group_size", 8)
    assert g8.groups.mean_size == 8 and g8.groups.max_size >= 8
    assert abs(analytic_parameters(g8)[1]["n_groups"] - g0) <= 1
    doubled = size_overrides(RAW, "participants_scale", 2)["sites.participants"]
    assert doubled == [2 * n for n in RAW["sites"]["participants"]]
    with pytest.raises(ValueError, match="choose one of"):
        size_overrides(RAW, "n_trainers", 3)


def test_crossing_is_linear_interpolation():
    x, y = np.array([10.0, 20, 30]), np.array([0.5, 0.7, 0.9])
    assert crossing(x, y, 0.8) == pytest.approx(25.0)
    assert crossing(x, y, 0.4) == 10.0
    assert crossing(x, y, 0.95) is None


def test_simulated_curve_follows_the_analytic_curve_where_they_agree():
    """Blinded assessors, MCAR, 80 % completion, no dose-response: the analytic IRGT
    formula describes the simulated world; every point within 3 MCSE."""
    raw = {
        **RAW,
        "blinding": {**RAW["blinding"], "assessor_bias": 0.0},
        "dropout": {**RAW["dropout"], "mechanism": "MCAR", "completion_target": 0.8},
        "attendance": {**RAW["attendance"], "dose_response": "none"},
        "outcomes": {"psp": RAW["outcomes"]["psp"]},
    }
    c = power_curve(raw, "n_groups", [14, 30], reps=400, seed=5, target=0.8)
    for p in c.points:
        assert abs(p.power - p.analytic) < 3 * p.power_mcse + 0.01, p
    assert c.points[0].power < c.points[1].power


def test_cli_curve_prints_the_read_off_and_refuses_other_keys():
    runner = CliRunner()
    out = runner.invoke(
        main,
        [
            "power",
            str(SFT),
            "--curve",
            "n_groups=10,40",
            "--reps",
            "60",
            "--seed",
            "2",
            "--outcome",
            "psp",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "n_groups for power 0.8 (simulated curve)" in out.output
    bad = runner.invoke(main, ["power", str(SFT), "--curve", "groups.icc_group=0.1,0.2"])
    assert bad.exit_code == 2 and "choose one of" in bad.output
