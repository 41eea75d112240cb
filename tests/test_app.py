"""The browser planner's logic without a browser: the TOML round trip, form fields as
``--set`` overrides (same scenario, same one-line errors as the CLI), the command line it
shows, the analytic curve and solve, cancellation, and the evaluator's analysis against
``trialsim analyse`` / ``trialsim bayes --method exact``."""

from __future__ import annotations

import json
import math
import shlex
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trialsim.app import compute
from trialsim.app.fields import FIELDS, base_values, display, field_of_message, overrides
from trialsim.app.toml_write import dumps
from trialsim.cli import main
from trialsim.scenario import ScenarioError, load_scenario, read_scenario_raw

ROOT = Path(__file__).resolve().parents[1]
SFT = ROOT / "scenarios" / "sft-19m.toml"
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))
MAP = "participant=deltager,municipality=kommune,arm=gruppe,group=hold,trainer=træner"
MAP += ",sessions_offered=tilbudt,sessions_attended=fremmøde"
EXAMPLE = ROOT / "scenarios" / "data" / "sft-example.csv"


def _form(path: Path):
    raw = read_scenario_raw(path)
    s = compute.build(raw, [], str(path))
    values = base_values(raw, s.model_dump(), s.primary)
    shown = {f.id: display(f, values[f.id]) for f in FIELDS if values[f.id] is not None}
    return raw, s, values, shown


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_scenario_written_back_reads_the_same(path):
    raw = read_scenario_raw(path)
    text = dumps(raw, header="round trip")
    assert tomllib.loads(text) == raw  # every value, type and table exactly
    again = compute.build(tomllib.loads(text), [], "written")
    assert again.model_dump() == load_scenario(path).model_dump()


def test_toml_writer_covers_every_toml_type():
    import datetime

    raw = {
        "a b": 'quote " backslash \\ tab \t newline \n æøå',
        "n": -3,
        "x": 1e-05,
        "big": 1e20,
        "inf": float("inf"),
        "flag": False,
        "day": datetime.date(2014, 9, 1),
        "when": datetime.datetime(2014, 9, 1, 12, 30),
        "nested": {"list": [1, 2.5, "s", [True]], "tables": [{"k": 1}], "deep": {"v": 0.1}},
        "empty": {},
    }
    back = tomllib.loads(dumps(raw))
    assert back == raw


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_an_untouched_form_sets_nothing(path):
    _, s, values, shown = _form(path)
    assert overrides(values, shown, s.primary) == ([], {})


def test_changed_fields_are_the_cli_overrides():
    raw, s, values, shown = _form(SFT)
    shown.update(
        icc_group=0.1,
        mechanism="MCAR",
        participants="[40, 40, 40, 40, 40, 40, 40, 40, 40]",
        n_steps=3.0,
    )
    ovr, errors = overrides(values, shown, s.primary)
    assert errors == {}
    assert ovr == [
        "sites.participants=[40, 40, 40, 40, 40, 40, 40, 40, 40]",
        "groups.icc_group=0.1",
        'dropout.mechanism="MCAR"',
    ]
    # the scenario the page builds is the one the command line builds from its command
    app_s = compute.build(raw, ovr, str(SFT))
    cmd = compute.cli_command(str(SFT), ovr, reps=500, seed=7)
    words = shlex.split(cmd)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert words[:3] == ["trialsim", "power", str(SFT)]
    assert words[-4:] == ["--reps", "500", "--seed", "7"]
    assert load_scenario(words[2], sets).digest() == app_s.digest()


def test_a_site_list_that_disagrees_with_the_names_is_marked_at_the_list():
    raw, s, values, shown = _form(SFT)
    shown["participants"] = "[40, 40]"
    ovr, _ = overrides(values, shown, s.primary)
    with pytest.raises(ScenarioError) as caught:
        compute.build(raw, ovr, str(SFT))
    assert field_of_message(str(caught.value), s.primary) == "participants"


def test_bad_input_gives_the_cli_line_next_to_its_field():
    raw, s, values, shown = _form(SFT)
    shown["icc_group"] = 1.5
    ovr, errors = overrides(values, shown, s.primary)
    with pytest.raises(ScenarioError) as caught:
        compute.build(raw, ovr, str(SFT))
    message = str(caught.value)
    assert field_of_message(message, s.primary) == "icc_group"
    result = CliRunner().invoke(main, ["power", str(SFT), "--set", ovr[0], "--method", "analytic"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}"
    shown["icc_group"] = None  # an emptied number box
    assert overrides(values, shown, s.primary)[1] == {
        "icc_group": "groups.icc_group: enter a number"
    }


def test_power_curve_and_solve_agree_with_the_analytic_power():
    from trialsim.power.from_scenario import analytic_power, analytic_solve

    s = load_scenario(SFT)
    a = compute.analytic(s, s.primary, 0.8)
    curve = compute.power_curve(s, s.primary, 0.8)
    assert compute.power_curve(s, s.primary, 0.8, answer=a) == curve  # reused inputs
    assert a["power"] == analytic_power(s)["power"]
    assert a["solve"] == analytic_solve(s, "n_groups", 0.8, s.primary)
    x, p = np.array(curve["x"]), np.array(curve["power"])
    assert curve["now"] == a["n_groups"] == 27
    assert p[x == 27][0] == pytest.approx(a["power"], rel=1e-12)
    assert np.all(np.diff(p) > 0)  # more groups, more power
    # the solved count (controls growing with the groups: the allocation held) is the first
    # on the curve reaching the target
    need = a["solve"]["value"]
    assert a["solve"].get("hold", "allocation") == "allocation"
    assert p[x == need][0] >= 0.8 > p[x == need - 1][0]


def test_municipality_design_curve_varies_clusters():
    s = load_scenario(ROOT / "scenarios" / "sft-19m-municipality.toml")
    curve = compute.power_curve(s, s.primary, 0.8)
    assert curve["unknown"] == "n_clusters" and curve["formula"] == "crt"


def test_simulation_is_the_library_call_and_cancels():
    from trialsim.analyse.registry import default_analysis
    from trialsim.power.simulation import simulate_operating_characteristics

    s = load_scenario(SFT, ["groups.icc_group=0.1"])
    ticks = []
    r = compute.simulate(s, "psp", reps=64, seed=3, progress=ticks.append)
    name = default_analysis(s.structure, "psp").name
    (oc,), _ = simulate_operating_characteristics(s, [name], reps=64, seed=3, outcome="psp")
    assert r["analysis"] == name and sum(ticks) == 64
    for k in ("power", "type1", "bias", "coverage", "bias_mcse", "coverage_mcse"):
        assert r[k] == getattr(oc, k) or (math.isnan(r[k]) and math.isnan(getattr(oc, k)))
    stop = threading.Event()
    stop.set()
    with pytest.raises(compute.Cancelled):
        compute.simulate(s, "psp", reps=600, seed=3, cancel=stop)


def test_evaluator_matches_analyse_and_exact_bayes():
    r = compute.evaluate(EXAMPLE, mapping=MAP, outcome="psp", better="higher", mcid=7.0)
    cli = CliRunner().invoke(
        main,
        ["analyse", str(EXAMPLE), "--map", MAP, "--outcome", "psp", "--better", "higher",
         "--mcid", "7", "--format", "json"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    expected = json.loads(cli.stdout)
    assert r["structure"] == expected["structure"]
    got, want = r["frequentist"][0], expected["results"][0]
    for k in ("estimate", "se", "ci_low", "ci_high", "p_value"):
        assert got[k] == pytest.approx(want[k], rel=1e-12)
    out = ROOT / "results" / "_app_test_bayes"
    cli = CliRunner().invoke(
        main,
        ["bayes", str(EXAMPLE), "--map", MAP, "--outcome", "psp", "--better", "higher",
         "--mcid", "7", "--method", "exact", "--format", "json", "--out", str(out)],
    )  # fmt: skip
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    assert cli.exit_code == 0, cli.output
    bayes = json.loads(cli.stdout)
    b = r["bayes"]
    assert b["parameters"][0]["mean"] == pytest.approx(bayes["parameters"][0]["mean"], rel=1e-12)
    assert b["p_beyond_mcid"] == pytest.approx(bayes["p_beyond_mcid"], rel=1e-12)
    # the plotted posterior is the one summarised
    assert float(r["posterior"].mean[0]) == pytest.approx(b["parameters"][0]["mean"], rel=1e-12)


def test_evaluator_bad_mapping_is_the_cli_line():
    from trialsim.cli.common import InputError

    with pytest.raises((ValueError, InputError)) as caught:
        compute.evaluate(EXAMPLE, mapping="arm=nope", outcome=None, better=None, mcid=None)
    assert "\n" not in str(caught.value).strip() or "nope" in str(caught.value)


def test_app_command_refuses_a_bad_scenario_and_a_busy_port():
    import socket

    bad = CliRunner().invoke(main, ["app", "no-such.toml"])
    assert bad.exit_code == 2 and bad.output.startswith("error: no-such.toml: no such scenario")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        busy = CliRunner().invoke(main, ["app", str(SFT), "--port", str(port)])
    assert busy.exit_code == 2 and "already in use" in busy.output


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_every_library_scenario_opens_in_the_app(path):
    from trialsim.app import create_app

    s = load_scenario(path)
    html = str(create_app(str(path), reps=50).ui["html"])
    assert 'id="icc_group"' in html and f'value="{s.groups.icc_group}"' in html
    assert 'id="reps"' in html and 'value="50"' in html
