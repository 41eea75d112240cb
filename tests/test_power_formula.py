"""``--formula`` in ``power`` and ``sweep``: the model fitted on every simulated replicate.

Oracles: the named analysis the formula spells out (same seed: identical estimates), and
lmerTest on one replicate written out by ``trialsim simulate`` (frozen numbers, the R call
in tests/data/power_formula/lmertest.R; R 4.2.2, lme4 1.1-31, lmerTest 3.1-3).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trialsim.analyse.formula import parse_formula
from trialsim.analyse.registry import formula_analysis
from trialsim.cli import main
from trialsim.scenario import load_scenario
from trialsim.simulate import simulate_trials

ROOT = Path(__file__).parent.parent
SFT = str(ROOT / "scenarios" / "sft-19m.toml")
BDI = ROOT / "scenarios" / "depression-bdi.toml"
DATA = Path(__file__).parent / "data" / "power_formula"
# lmerTest on bdi-rep1.csv: estimate, SE, Satterthwaite df; variances group, trainer, residual
R_ARM = (-6.2797753858630951, 2.3722204722515343, 13.7214998780994506)
R_VAR = {"group": 18.3541234756075, "trainer": 10.4148228033946, "residual": 80.0523762664122}


def _replicates(tmp_path, name, *args):
    out = tmp_path / f"{name}.csv"
    r = CliRunner().invoke(
        main,
        ["power", SFT, "--method", "simulation", "--reps", "60", "--seed", "4",
         "--keep-replicates", str(out), "--format", "json", *args],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return json.loads(r.output), pd.read_csv(out)


def test_formula_equals_the_named_analysis_on_the_same_seed(tmp_path):
    named, a = _replicates(tmp_path, "mixed", "--analysis", "mixed")
    text = "psp ~ arm + baseline + municipality + (1 | group)"
    model, b = _replicates(tmp_path, "formula", "--formula", text)
    np.testing.assert_allclose(b["estimate"], a["estimate"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(b["se"], a["se"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(b["p_value"], a["p_value"], rtol=0, atol=1e-8)
    assert model["formula"] == text
    assert model["analyses"][0]["power"] == named["analyses"][0]["power"]
    assert "--formula" in model["choices"][0]["line"]


def test_formula_with_a_crossed_trainer_term_equals_lmertest_on_a_simulated_replicate():
    s = load_scenario(BDI, ["groups.icc_group=0.1", "groups.icc_trainer=0.08"])
    text = "bdi ~ arm + baseline + municipality + drug + length + (1 | group) + (1 | trainer)"
    spec = parse_formula(text, s.structure)
    assert spec.lme4() == text
    data = simulate_trials(s, range(2), seed=7).take(np.array([1]))
    # the replicate power fits is the one `trialsim simulate` wrote for R
    frame = data.to_frame()
    written = pd.read_csv(DATA / "bdi-rep1.csv")
    np.testing.assert_allclose(frame["bdi"].to_numpy(float), written["bdi"].to_numpy(float))
    e = formula_analysis(spec).estimate(data, "bdi")
    # lme4 with bobyqa run to rhoend 1e-12 (the R script): agreement to ~1e-8
    assert e.estimate[0] == pytest.approx(R_ARM[0], rel=1e-7)
    assert e.se[0] == pytest.approx(R_ARM[1], rel=1e-7)
    assert e.df[0] == pytest.approx(R_ARM[2], rel=1e-6)
    for name, value in R_VAR.items():
        assert e.variance[name][0] == pytest.approx(value, rel=1e-6)


def test_formula_in_power_and_sweep_runs_and_is_printed(tmp_path):
    text = "bdi ~ arm + baseline + drug + (1 | group) + (1 | trainer)"
    r = CliRunner().invoke(
        main, ["power", str(BDI), "--method", "simulation", "--reps", "20", "--formula", text]
    )
    assert r.exit_code == 0, r.output
    assert f"analysis: formula {text}" in r.output
    r = CliRunner().invoke(
        main,
        ["sweep", str(BDI), "--vary", "groups.icc_group=0.05,0.1", "--reps", "20",
         "--formula", text, "--out", str(tmp_path / "sw")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "sw" / "results.csv")
    assert list(table["analysis"]) == ["formula", "formula"]
    assert (table["analysis_reason"] == f"--formula {text}").all()


def test_formula_errors_are_one_line():
    r = CliRunner().invoke(main, ["power", SFT, "--formula", "psp ~ baseline", "--reps", "5"])
    assert r.exit_code == 2 and "no arm term" in r.output
    r = CliRunner().invoke(
        main, ["power", SFT, "--formula", "psp ~ arm", "--analysis", "mixed", "--reps", "5"]
    )
    assert r.exit_code == 2 and "give one" in r.output


def test_formula_curve_equals_the_named_analysis_curve():
    """``--formula`` with ``--curve``: the same curve as the analysis it spells out (same seed
    at every point), with the model printed back."""

    def curve(*args):
        r = CliRunner().invoke(
            main,
            ["power", SFT, "--curve", "n_groups=20,30", "--reps", "40", "--seed", "5",
             "--format", "json", *args],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        return json.loads(r.output[r.output.index("{") :])["curve"]

    text = "psp ~ arm + baseline + municipality + (1 | group)"
    named, model = curve("--analysis", "mixed"), curve("--formula", text)
    assert [p["power"] for p in model["points"]] == [p["power"] for p in named["points"]]
    assert [p["type1"] for p in model["points"]] == [p["type1"] for p in named["points"]]
    assert model["analysis"] == "formula" and model["formula"] == text
