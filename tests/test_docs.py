"""The documentation: generated pages match the code, no text points to files users do not
have, and the outputs the docs promise (Parquet provenance, posterior draws, assurance CSV)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _gen_docs()


def test_generated_pages_match_the_code():
    """docs/scenario-reference.md and docs/cli.md are what scripts/gen_docs.py makes now (made
    in a fresh interpreter: click's help layout must not depend on what other tests ran)."""
    import subprocess
    import sys

    script = str(ROOT / "scripts" / "gen_docs.py")
    code = (
        "import importlib.util, json, sys; "
        f"spec = importlib.util.spec_from_file_location('g', {script!r}); "
        "g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g); "
        "json.dump({str(p): make() for p, make in g.PAGES.items()}, sys.stdout)"
    )
    pages = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    )
    for path, text in pages.items():
        assert Path(path).read_text(encoding="utf-8") == text, (
            f"{Path(path).relative_to(ROOT)} is out of date: run python scripts/gen_docs.py"
        )


def test_scenario_reference_lists_every_key_with_range_and_default():
    page = gen.scenario_page()
    page = page.replace("<wbr>", "")
    rows = {
        m.group(1): m.group(0) for m in re.finditer(r"^\| <code>([\w.]+)</code> \|.*$", page, re.M)
    }
    keys = {k for k in gen.scenario_keys() if not k.endswith(".type")}
    assert keys <= set(rows), sorted(keys - set(rows))
    assert set(gen.MEANINGS) <= gen.scenario_keys(), sorted(set(gen.MEANINGS) - gen.scenario_keys())
    # constraints, defaults and units come through
    assert "| <code>groups.icc_group</code> | number | [0, 1) | 0.05 |" in rows["groups.icc_group"]
    assert "| (0, 1) | 0.5 |" in rows["design.allocation_treated"]
    assert "**required**" in rows["design.randomisation"]
    assert "`stepped-wedge`" in rows["design.randomisation"]
    assert "each [0, 240] | [0, 9, 15]" in rows["design.visit_months"]
    assert "staff hours" in rows["sites.recruitment.hours_per_motivation_contact"]
    assert "DESIGN.md" not in page


def test_cli_reference_has_every_command():
    from trialsim.cli import main

    page = gen.cli_page()
    for name in main.commands:
        assert f"## trialsim {name}\n" in page
        assert f"Usage: trialsim {name} [OPTIONS]" in page


def test_cell_escapes_pipes_outside_code_only():
    assert gen._cell("a | b `(1 | g)`") == "a \\| b `(1 | g)`"


def test_no_user_text_points_to_files_users_do_not_have():
    """Help texts, docstrings and docs pages never cite the design note or ../shared."""
    texts = [p for p in (ROOT / "docs").glob("*.md")]
    texts += [p for p in (ROOT / "trialsim").rglob("*.py")]
    bad = [
        str(p.relative_to(ROOT))
        for p in texts
        if re.search(r"DESIGN\.md|\.\./shared", p.read_text(encoding="utf-8"))
    ]
    assert not bad, bad


def test_nav_lists_every_page():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if p not in nav] == []


# ---- outputs the docs promise ------------------------------------------------------------------


def test_simulate_parquet_carries_the_sidecar_record(tmp_path):
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from trialsim.cli import main

    out = tmp_path / "sim.parquet"
    scenario = ROOT / "scenarios" / "sft-19m.toml"
    args = ["simulate", str(scenario), "--reps", "2", "--seed", "7", "--outcomes", "psp"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(pq.read_schema(out).metadata[b"trialsim"])
    sidecar = json.loads((tmp_path / "sim.parquet.trialsim.json").read_text())
    assert record == sidecar
    prov = record["provenance"]
    assert prov["command"] == "simulate" and prov["seed"] == 7
    assert prov["settings"]["reps"] == 2 and prov["settings"]["outcomes"] == ["psp"]
    assert len(prov["scenario_file_sha256"]) == 64 and prov["packages"]["trialsim"]
    assert record["structure"]["arms"] == ["control", "treatment"]
    frame = pd.read_parquet(out)
    assert len(frame) == 2 * 340 * 3 and "psp" in frame


def _posterior():
    import xarray as xr

    rng = np.random.default_rng(1)
    effect = rng.normal(size=(2, 3))
    u = rng.normal(size=(2, 3, 4))
    return xr.Dataset(
        {
            "effect": (("chain", "draw"), effect),
            "u": (("chain", "draw", "group"), u),
        },
        coords={"chain": [0, 1], "draw": [0, 1, 2]},
    )


def test_draws_frame_one_row_per_chain_and_draw():
    from trialsim.bayes.output import draws_frame

    post = _posterior()
    frame = draws_frame(post)
    assert list(frame.columns) == ["chain", "draw", "effect", "u[0]", "u[1]", "u[2]", "u[3]"]
    assert frame["chain"].tolist() == [0, 0, 0, 1, 1, 1]
    assert frame["draw"].tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_array_equal(frame["effect"], post["effect"].values.ravel())
    np.testing.assert_array_equal(frame["u[2]"], post["u"].values[:, :, 2].ravel())


def test_write_draws_csv_and_parquet_agree(tmp_path):
    from trialsim.bayes.output import draws_frame, write_draws

    csv, parquet = write_draws(_posterior(), tmp_path)
    expected = draws_frame(_posterior())
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), expected)
    pd.testing.assert_frame_equal(pd.read_csv(csv), expected, check_exact=False, rtol=1e-9)


def test_assurance_csv_beside_json(tmp_path):
    from trialsim.bayes.assurance import AssuranceResult
    from trialsim.cli.assurance import csv_paths, write_csv_tables

    result = AssuranceResult(
        decision="p_beyond_mcid>0.5",
        assurance=0.4,
        assurance_mcse=0.02,
        p_success_null=0.03,
        p_success_null_mcse=0.01,
        p_success_mcid=0.81,
        p_success_mcid_mcse=0.02,
        n_draws=2,
        reps_per_draw=20,
        failed=0,
        draws=[
            {"outcomes.psp.effect": 6.5, "groups.icc_group": 0.01, "success_rate": 0.45},
            {"outcomes.psp.effect": 4.0, "groups.icc_group": 0.07, "success_rate": 0.35},
        ],
    )
    out = tmp_path / "assurance.json"
    assert csv_paths(out) == (tmp_path / "assurance.csv", tmp_path / "assurance-draws.csv")
    summary_path, draws_path = write_csv_tables(out, result)
    summary = pd.read_csv(summary_path)
    assert summary["quantity"].tolist() == ["assurance", "p_success_null", "p_success_mcid"]
    assert summary["estimate"].tolist() == [0.4, 0.03, 0.81]
    assert summary["mcse"].tolist() == [0.02, 0.01, 0.02]
    draws = pd.read_csv(draws_path)
    assert draws.columns.tolist() == [
        "draw", "outcomes.psp.effect", "groups.icc_group", "success_rate",
    ]  # fmt: skip
    assert draws["success_rate"].tolist() == [0.45, 0.35]
    # the per-draw rates average to the assurance
    assert draws["success_rate"].mean() == pytest.approx(result.assurance)
