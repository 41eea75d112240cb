"""Provenance records and `trialsim report` (Markdown and standalone HTML).

Oracles: the scenario file hash is recomputed with hashlib; package versions come from
importlib.metadata; the embedded figure decodes to the PNG's bytes.
"""

import base64
import hashlib
import io
import json
import re
import sys
from importlib import metadata

import numpy as np
import pandas as pd
from click.testing import CliRunner

from tests.conftest import SFT
from trialsim.cli import main
from trialsim.files import write_bytes, write_json
from trialsim.report.provenance import build_provenance, read_provenance, write_provenance
from trialsim.scenario import load_scenario


def _results_folder(tmp_path):
    """A folder like the commands write: provenance, a CSV with MCSEs, a JSON, a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = load_scenario(SFT)
    folder = tmp_path / "res"
    write_provenance(
        folder,
        build_provenance(
            command="compare",
            scenario_path=SFT,
            scenario=s,
            seed=42,
            argv=["trialsim", "compare", str(SFT), "--reps", "10"],
            reps=10,
        ),
    )
    pd.DataFrame(
        {"design": ["individual", "cohort"], "power": [0.81, 0.45], "power_mcse": [0.012, 0.016]}
    ).to_csv(folder / "compare.csv", index=False)
    write_json(
        folder / "summary.json", {"scenario": s.name, "rows": [{"a": 1, "b": np.float64(2.5)}]}
    )
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(folder / "figure.png")
    plt.close(fig)
    sub = folder / "sweep" / "cells"
    sub.mkdir(parents=True)
    (sub / "abc.json").write_text("{}")  # per-cell files are not reported
    return folder


def test_provenance_record(tmp_path):
    s = load_scenario(SFT)
    p = build_provenance(
        command="sweep",
        scenario_path=SFT,
        scenario=s,
        seed=7,
        argv=["/x/bin/trialsim", "sweep", "a b"],
        reps=3,
    )
    assert p["scenario_file_sha256"] == hashlib.sha256(SFT.read_bytes()).hexdigest()
    assert p["scenario_sha256"] == s.digest()
    assert p["packages"]["numpy"] == metadata.version("numpy")
    assert p["command_line"] == "trialsim sweep 'a b'"
    assert p["seed"] == 7 and p["settings"] == {"reps": 3}
    write_provenance(tmp_path, p)
    assert read_provenance(tmp_path) == json.loads(json.dumps(p))


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_bytes(tmp_path / "a.bin", b"123")
    write_json(tmp_path / "b.json", {"x": np.int64(3), "y": np.arange(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json"]
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": 3, "y": [0, 1]}


def test_report_markdown_and_html(tmp_path):
    folder = _results_folder(tmp_path)
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    sha = hashlib.sha256(SFT.read_bytes()).hexdigest()
    for text in (md, html):
        assert sha in text
        assert f"numpy {metadata.version('numpy')}" in text
        assert "--reps 10" in text
        assert "0.810\u00a0±\u00a00.012" in text  # with its Monte Carlo SE, never wrapped
        assert "abc.json" not in text
    assert "![figure.png](figure.png)" in md
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(embedded) == (folder / "figure.png").read_bytes()
    assert "<script" not in html


def test_report_on_empty_or_missing_folder_is_one_line(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        result = CliRunner().invoke(main, ["report", str(folder)])
        assert result.exit_code == 2 and result.output.startswith("error: ")
        assert "Traceback" not in result.output


def test_numbers_for_people():
    from trialsim.report.numbers import count, money, number, percent, pm

    nb = "\u00a0"
    assert money(2e6, "DKK") == f"DKK{nb}2,000,000"
    assert count(12345.0) == "12,345" and number(-4.2, 2) == "\u22124.2"
    assert number(7.0) == "7" and number(0.008182) == "0.00818"
    assert percent(0.6234, 0.0107) == f"62{nb}%{nb}±{nb}1{nb}%"
    assert percent(0.9995, digits=1) == f">{nb}99.9{nb}%" and percent(0.0) == f"0{nb}%"
    assert pm(0.863, 0.011) == f"0.863{nb}±{nb}0.011"


def test_wide_tables_are_split_to_fit_a4_and_repeat_the_key_column():
    from trialsim.report.report import MAX_LINE_CHARS, fit_width

    header = ("design", *(f"quantity {i}" for i in range(24)))
    rows = [("individual", *("0.123 ± 0.004" for _ in range(24)))] * 3
    parts = fit_width(header, rows)
    assert len(parts) > 1
    seen = []
    for h, r in parts:
        assert h[0] == "design" and all(row[0] == "individual" for row in r)
        width = sum(max(len(str(x)) for x in col) + 3 for col in zip(*r, strict=True))
        assert width <= MAX_LINE_CHARS
        seen += h[1:]
    assert tuple(seen) == header[1:]  # every column once, in order
    small = [r[:4] for r in rows]
    assert fit_width(header[:4], small) == [(header[:4], tuple(small))]


def _sft_results(tmp_path):
    """Outputs as the commands write them (small numbers made up, shapes real)."""
    root = tmp_path / "sft"
    (root / "budget").mkdir(parents=True)
    write_json(
        root / "power.json",
        {
            "scenario": "sft-19m",
            "outcome": "psp",
            "alpha": 0.05,
            "seed": 1,
            "reps": 2000,
            "versions": {"python": "3.11.7", "numpy": "2.4.6"},
            "analyses": [
                {
                    "analysis": "mixed",
                    "method": "simulation",
                    "outcome": "psp",
                    "reps": 2000,
                    "truth": 4.2007,
                    "power": 0.6234,
                    "power_mcse": 0.0108,
                    "type1": 0.049,
                    "type1_mcse": 0.0048,
                    "bias": 0.01,
                    "bias_mcse": 0.04,
                    "coverage": 0.95,
                    "coverage_mcse": 0.005,
                    "failures": 0,
                }
            ],
            "analytic": {"formula": "irgt", "power": 0.6724, "effect": 4.2, "n_groups": 27},
        },
    )
    write_json(
        root / "recruitment.json",
        {
            "scenario": "sft-19m",
            "design": "individual",
            "reps": 1000,
            "months_to_full_enrolment": {"median": 21.29, "p10": 18.18, "p90": 26.05},
            "recruited": {"median": 340.0, "p10": 340.0, "p90": 340.0},
            "groups_started": {"median": 27.0, "p10": 26.0, "p90": 29.0},
            "groups_cancelled": {"median": 3.0, "p10": 1.0, "p90": 5.0},
            "staff_hours": {"median": 5149.5, "p10": 4951.5, "p90": 5347.0},
            "calendar": {
                "full_enrolment_date": {
                    "median": "2016-06-10",
                    "p10": "2016-03-07",
                    "p90": "2016-11-02",
                }
            },
            "provenance": {"seed": 1, "python": "3.11.7", "packages": {"numpy": "2.4.6"}},
        },
    )
    write_json(
        root / "compare.json",
        {
            "target_power": 0.8,
            "rows": [
                {
                    "design": "individual",
                    "analysis": "mixed",
                    "power": 0.62,
                    "power_mcse": 0.011,
                    "groups_needed": 49,
                    "groups_unit": "treatment groups",
                }
            ],
        },
    )
    write_json(
        root / "budget" / "budget.json",
        {
            "budget": 2000000.0,
            "best": {
                "group_size": 9,
                "n_groups": 24,
                "participants": 432,
                "trainers": 12,
                "cost": 1980000.0,
                "power": 0.748,
            },
            "by_group_size": [
                {
                    "group_size": 9,
                    "n_groups": 24,
                    "participants": 432,
                    "trainers": 12,
                    "cost": 1980000.0,
                    "power": 0.748,
                }
            ],
        },
    )
    for sub in ("", "budget"):
        write_provenance(
            root / sub,
            build_provenance(
                command="x",
                scenario_path=SFT,
                scenario=load_scenario(SFT),
                seed=42,
                argv=["trialsim", "x", sub or "top"],
            ),
        )
    return root


def test_report_sections_open_with_an_answer_and_provenance_comes_once(tmp_path):
    root = _sft_results(tmp_path)
    result = CliRunner().invoke(main, ["report", str(root), "--currency", "DKK"])
    assert result.exit_code == 0, result.output
    md = (root / "report.md").read_text().replace("\u00a0", " ")
    html = (root / "report.html").read_text()
    assert (
        "> With 27 groups the trial has 62 % ± 1 % power to detect an effect of 4.2 PSP points "
        "(mixed analysis, 2,000 simulated trials; analytic formula 67 %); 49 treatment groups "
        "give 80 % (analytic)." in md
    )
    assert "> Enrolling 340 participants takes a median 21.3 months" in md
    assert "> For DKK 2,000,000 the best use is 24 groups of 9 (432 participants" in md
    assert "| 9 | 24 | 432 | 12 | DKK 1,980,000 | 75 % |" in md
    # one provenance section, at the end, naming both command lines
    assert md.count("## Provenance") == 1 and html.count("<h2>Provenance</h2>") == 1
    assert md.index("## Provenance") > md.index("## Budget")
    assert "trialsim x top" in md and "trialsim x budget" in md
    assert md.count(f"numpy {metadata.version('numpy')}") == 1
    assert '<p class="answer">' in html


def test_type1_above_nominal_is_said_in_the_answer(tmp_path):
    root = _sft_results(tmp_path)
    record = json.loads((root / "power.json").read_text())
    record["analyses"][0].update(type1=0.092, type1_mcse=0.0064)
    write_json(root / "power.json", record)
    CliRunner().invoke(main, ["report", str(root)])
    md = (root / "report.md").read_text().replace("\u00a0", " ")
    assert "type-I error is 9.2 % ± 0.6 %, above the nominal 5 %" in md
    assert "2,000,000 (Amounts in the budget's currency.)" not in md  # no currency: none shown
    assert "the best use is 24 groups of 9" in md and "DKK" not in md


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_cold_kernel_cache_is_detected_from_the_index_files(tmp_path, capsys):
    from trialsim.report import progress

    term = _Terminal()

    pkg = tmp_path / "pkg"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "sub" / "kern.py").write_text("@njit(cache=True)\ndef f(x):\n    return x\n")
    (pkg / "plain.py").write_text("x = 1\n")
    assert progress.kernel_modules(pkg) == [pkg / "sub" / "kern.py"]
    assert progress.cold_kernel_modules(pkg) == [pkg / "sub" / "kern.py"]
    progress._NOTICE_SHOWN.clear()
    assert progress.compile_notice(root=pkg) is False  # not a terminal: nothing said
    assert capsys.readouterr().err == ""
    assert progress.compile_notice(root=pkg, stream=term) is True
    assert progress.compile_notice(root=pkg, stream=term) is False  # once per process
    assert term.getvalue() == progress.COMPILE_NOTICE + "\n"
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    (pkg / "sub" / "__pycache__" / f"kern.f-1.{tag}.nbi").write_bytes(b"")
    assert progress.cold_kernel_modules(pkg) == []
    # a second kernel module not compiled yet: partly warm, no notice
    (pkg / "sub" / "other.py").write_text("_JIT = {'cache': True}  # numba jit options\n")
    assert progress.cold_kernel_modules(pkg) == [pkg / "sub" / "other.py"]
    progress._NOTICE_SHOWN.clear()
    assert progress.compile_notice(root=pkg, stream=term) is False
    progress._NOTICE_SHOWN.clear()


def test_the_listed_kernel_modules_are_the_ones_in_the_package():
    from trialsim.report import progress

    found = [p.relative_to(progress.PACKAGE_ROOT).as_posix() for p in progress.kernel_modules()]
    assert tuple(found) == progress.KERNEL_MODULES


def test_status_and_track_without_a_terminal(capsys):
    from trialsim.report.progress import progress_bar, sampling_message, status, track

    message = sampling_message(chains=2, draws=1000, tune=500)
    assert message == (
        "sampling the posterior (NUTS): building and compiling the model, then 2 chains x "
        "1,000 draws after 500 tuning steps"
    )
    with status(message):
        pass
    assert capsys.readouterr().err == ""  # captured output (e.g. --format json) stays clean
    term = _Terminal()
    with status(message, stream=term):
        pass
    assert term.getvalue().startswith(message)
    with progress_bar(3, "simulating", kernels=False) as advance:
        advance(3)
        assert list(track(range(4), "MCMC check")) == [0, 1, 2, 3]


def three_arm_power_folder(tmp_path, *extra):
    """A folder holding ``trialsim power scenarios/three-arm.toml --format json`` (60
    replicates, the default analysis) as a user would save it."""
    from pathlib import Path

    root = tmp_path / "three-arm"
    root.mkdir()
    three = Path(SFT).parent / "three-arm.toml"
    out = CliRunner().invoke(
        main, ["power", str(three), "--reps", "60", "--seed", "2", "--format", "json", *extra]
    )
    assert out.exit_code == 0, out.output
    (root / "power.json").write_text(out.output[out.output.index("{") :])
    return root


def test_multi_arm_power_section_names_the_decision_and_every_contrast(tmp_path):
    root = three_arm_power_folder(tmp_path)
    result = CliRunner().invoke(main, ["report", str(root)])
    assert result.exit_code == 0, result.output
    md = (root / "report.md").read_text().replace("\u00a0", " ")
    p = json.loads((root / "power.json").read_text())
    dunnett = p["multi_arm"][0]["decisions"]["dunnett"]
    answer = next(line for line in md.splitlines() if line.startswith("> "))
    assert answer.startswith("> Of the 2 arms compared with control on PSP, at least one is ")
    assert f"significant in {round(100 * dunnett['any_power'])} %" in answer
    assert "Dunnett adjustment" in answer
    # the bias headlines of both contrasts (assessors unblinded in the scenario)
    assert "The scenario biases lmm on sft - control by" in answer
    assert "| lmm: sft |" in md and "| lmm: sft-booster |" in md and "| analytic: sft |" in md
    assert "| adjustment | any arm | all arms | FWER (no effect) | analytic any |" in md
    assert "| Holm |" in md and "≥ " in md


def test_analytic_only_multi_arm_power_section(tmp_path):
    root = three_arm_power_folder(tmp_path, "--method", "analytic")
    CliRunner().invoke(main, ["report", str(root)])
    md = (root / "report.md").read_text().replace("\u00a0", " ")
    assert "the analytic formula gives 64 % power that at least one is significant" in md
    assert "| adjustment | weakest arm | any arm | all arms |" in md
    assert "| arm vs control | analytic power |" in md and "| sft-booster | 67 % |" in md
