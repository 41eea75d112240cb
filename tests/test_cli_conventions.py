"""One command-line convention per concept across every command (issue 14, item 4).

The analysis is ``--analysis``; how an answer is computed is ``--method``; ``--out`` is a folder
for commands writing several files and a file for those writing one (the help says which);
``--format table|json|csv`` (with ``--csv-dialect``) wherever results are printed; an existing
output is kept unless ``--force``; intervals are ``LOW,HIGH``. Old spellings still work for one
release with a one-line deprecation notice on stderr.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.cli.common import OutPath

ROOT = Path(__file__).resolve().parent.parent
SFT = ROOT / "scenarios" / "sft-19m.toml"
BTHEB = ROOT / "tests" / "data" / "real" / "btheb.csv"
ANOREXIA = ROOT / "tests" / "data" / "real" / "anorexia.csv"
EXAMPLE = ROOT / "scenarios" / "data" / "sft-example.csv"
EXAMPLE_MAP = "participant=deltager,municipality=kommune,arm=gruppe,group=hold"

#: commands that print results (each must offer --format table|json|csv and --csv-dialect)
PRINTS_RESULTS = {
    "analyse", "assurance", "bayes", "budget", "calibrate", "compare", "power", "reanalyse",
    "recruit", "sweep",
}  # fmt: skip
#: commands printing no results table: a summary, a list, a "wrote ..." line or a server
PRINTS_NO_RESULTS = {"analyses", "app", "report", "simulate", "validate"}
#: commands that write files whatever their options (others write only when asked: --out, --plot)
WRITES_BY_DEFAULT = {"bayes", "budget", "compare", "report", "sweep"}
#: commands writing CSV files (besides printing it)
WRITES_CSV = {"assurance", "bayes", "budget", "compare", "power", "simulate", "sweep"}
#: how an answer is computed: the only commands with --method, and its values
METHODS = {"power": {"analytic", "simulation", "both"}, "bayes": {"mcmc", "exact"}}


def options(command: click.Command) -> dict[str, click.Option]:
    return {o: p for p in command.params if isinstance(p, click.Option) for o in p.opts}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ---- the conventions, checked on every registered command ------------------------------------


def test_every_command_is_classified():
    assert PRINTS_RESULTS | PRINTS_NO_RESULTS == set(main.commands)
    assert not PRINTS_RESULTS & PRINTS_NO_RESULTS


@pytest.mark.parametrize("name", sorted(main.commands))
def test_command_follows_the_conventions(name):
    command = main.commands[name]
    opts = options(command)
    if "--method" in opts:
        assert name in METHODS, f"{name}: --method is how an answer is computed, not an analysis"
        assert set(opts["--method"].type.choices) == METHODS[name]
    if "--analysis" in opts:
        assert opts["--analysis"].metavar == "NAME"
    if name in PRINTS_RESULTS:
        assert "--format" in opts and list(opts["--format"].type.choices) == [
            "table",
            "json",
            "csv",
        ]
    if name in PRINTS_RESULTS or name in WRITES_CSV:
        assert list(opts["--csv-dialect"].type.choices) == ["comma", "semicolon"]
    outputs = {o: p for o, p in opts.items() if isinstance(p.type, OutPath)}
    assert "--out" not in opts or "--out" in outputs, f"{name}: --out must be an OutPath"
    for option, param in outputs.items():
        kind = param.type.kind
        assert param.help.startswith("File" if kind == "file" else "Folder"), (name, option)
    if outputs or name in WRITES_BY_DEFAULT:
        assert "--force" in opts, f"{name} writes files: it needs --force"
    for interval in ("--rope", "--ci"):
        if interval in opts:
            assert opts[interval].metavar == "LOW,HIGH"


def test_help_hides_the_deprecated_spellings():
    analyse = CliRunner().invoke(main, ["analyse", "--help"]).output
    assert "--analysis" in analyse and "--method" not in analyse
    reanalyse = CliRunner().invoke(main, ["reanalyse", "--help"]).output
    assert "LOW,HIGH" in reanalyse and "LOW HIGH" not in reanalyse


# ---- deprecated spellings still work, with one line on stderr --------------------------------


def test_analyse_method_is_a_deprecated_alias_of_analysis():
    new = invoke(
        "analyse", ANOREXIA, "--reference", "Cont", "--analysis", "cr2", "--format", "json"
    )
    old = invoke("analyse", ANOREXIA, "--reference", "Cont", "--method", "cr2", "--format", "json")
    assert new.exit_code == old.exit_code == 0, old.output
    assert json.loads(old.stdout) == json.loads(new.stdout)
    assert json.loads(old.stdout)["analysis"] == "cr2"
    assert error_lines(old) == ["warning: --method is deprecated; use --analysis"]
    assert error_lines(new) == []


@pytest.mark.parametrize("old_ci", [["0.4", "10"], ["--ci=0.4,10"]])
def test_reanalyse_ci_two_values_is_deprecated(old_ci):
    base = ["reanalyse", "--estimate", "5.2", "--mcid", "7", "--format", "json"]
    new = invoke(*base, "--ci", "0.4,10")
    if old_ci[0].startswith("--ci="):
        old = invoke(*base, *old_ci)  # the new form, as --ci=LOW,HIGH: no notice
        assert error_lines(old) == []
    else:
        old = invoke(*base, "--ci", *old_ci)
        assert error_lines(old) == ["warning: --ci LOW HIGH is deprecated; use --ci LOW,HIGH"]
    assert new.exit_code == old.exit_code == 0, old.output
    assert json.loads(old.stdout) == json.loads(new.stdout)


def test_reanalyse_negative_interval_in_either_form():
    base = ["reanalyse", "--estimate", "-5.2", "--mcid", "-7", "--better", "lower"]
    new = invoke(*base, "--ci", "-10,-0.4", "--format", "json")
    old = invoke(*base, "--ci", "-10", "-0.4", "--format", "json")
    assert new.exit_code == old.exit_code == 0, new.output + old.output
    assert json.loads(new.stdout) == json.loads(old.stdout)


def test_assurance_out_file_is_deprecated_and_still_writes(tmp_path):
    args = ["assurance", SFT, "--design-prior", "effect=normal:7,3", "--reps", "40"]
    args += ["--per-draw", "20", "--format", "json"]
    old = invoke(*args, "--out", tmp_path / "a.json")
    assert old.exit_code == 0, old.output
    assert error_lines(old) == [
        "warning: --out a.json is deprecated; use --out FOLDER (assurance.json and its CSVs "
        "go in it)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-draws.csv", "a.csv", "a.json"]
    new = invoke(*args, "--out", tmp_path / "folder")
    assert new.exit_code == 0, new.output
    assert json.loads(new.stdout)["assurance"] == json.loads(old.stdout)["assurance"]
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == [
        "assurance-draws.csv",
        "assurance.csv",
        "assurance.json",
    ]


# ---- --format csv: tidy rows, one header, on stdout, for every command that prints results --

BUDGET = ["--budget", "2000000", "--cost-group", "30000", "--cost-participant", "2500"]


def csv_runs(tmp: Path) -> dict[str, list]:
    """One small run of every results-printing command (writing into ``tmp``)."""
    return {
        "analyse": ["analyse", ANOREXIA, "--reference", "Cont"],
        "assurance": ["assurance", SFT, "--design-prior", "effect=normal:7,3", "--reps", "40"],
        "bayes": ["bayes", BTHEB, "--outcome", "bdi", "--better", "lower", "--mcid", "5",
                  "--method", "exact", "--out", tmp / "bayes"],
        "budget": ["budget", SFT, *BUDGET, "--out", tmp / "budget"],
        "calibrate": ["calibrate", EXAMPLE, "--map", EXAMPLE_MAP, "--out", tmp / "next.toml"],
        "compare": ["compare", SFT, "--designs", "individual,cohort", "--reps", "4", "--out",
                    tmp / "compare"],
        "power": ["power", SFT, "--method", "analytic"],
        "power-range": ["power", SFT, "--method", "analytic", "--solve", "n_groups", "--range",
                        "icc=0.02:0.12:3"],
        "power-simulated": ["power", SFT, "--reps", "10", "--analysis", "mixed"],
        "reanalyse": ["reanalyse", "--estimate", "5.2", "--ci", "0.4,10", "--mcid", "7"],
        "recruit": ["recruit", SFT, "--reps", "5"],
        "sweep": ["sweep", SFT, "--vary", "groups.icc_group=0.02,0.08", "--reps", "4", "--out",
                  tmp / "sweep"],
    }  # fmt: skip


def test_every_results_command_has_a_csv_run():
    assert {k.split("-")[0] for k in csv_runs(Path("x"))} == PRINTS_RESULTS


@pytest.mark.parametrize("name", sorted(csv_runs(Path("x"))))
def test_csv_output_parses_in_both_dialects(name, tmp_path):
    args = csv_runs(tmp_path / "comma")[name]
    comma = invoke(*args, "--format", "csv")
    assert comma.exit_code == 0, comma.output
    rows = list(csv.reader(io.StringIO(comma.stdout)))
    assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows), comma.stdout[:500]
    assert len(set(rows[0])) == len(rows[0]), "one header, with distinct column names"
    frame = pd.read_csv(io.StringIO(comma.stdout))
    args = csv_runs(tmp_path / "semicolon")[name]
    semi = invoke(*args, "--format", "csv", "--csv-dialect", "semicolon")
    assert semi.exit_code == 0, semi.output
    european = pd.read_csv(io.StringIO(semi.stdout), sep=";", decimal=",")
    assert list(european.columns) == list(frame.columns)
    numeric = frame.select_dtypes("number").columns
    numeric = [c for c in numeric if c not in ("seconds",)]
    assert len(numeric) > 0
    pd.testing.assert_frame_equal(european[numeric], frame[numeric], check_dtype=False, rtol=1e-12)


# ---- one overwrite policy -------------------------------------------------------------------


def test_an_existing_output_is_refused_in_one_line_and_kept(tmp_path):
    out = tmp_path / "sim.csv"
    out.write_text("old\n")
    result = invoke("simulate", SFT, "--reps", "2", "--out", out)
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"error: {out} exists; add --force to overwrite, or choose another --out"
    ]
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.csv"]
    forced = invoke("simulate", SFT, "--reps", "2", "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_text().startswith("rep,participant")


@pytest.mark.parametrize(
    "args, target",
    [
        (["compare", SFT, "--reps", "4", "--designs", "individual"], "compare.csv"),
        (["budget", SFT, *BUDGET], "budget.csv"),
        (["reanalyse", "--estimate", "5", "--se", "2", "--mcid", "7", "--plot"], "fig.png"),
        (["power", SFT, "--method", "analytic", "--plot"], "fig.png"),
        (["recruit", SFT, "--reps", "5", "--plot"], "fig.png"),
        (["report"], "report.md"),
    ],
)
def test_writing_commands_refuse_to_overwrite(args, target, tmp_path):
    kept = tmp_path / target
    kept.write_text("old\n")
    if args[0] in ("compare", "budget"):
        args = [*args, "--out", tmp_path]
    elif args[0] == "report":
        args = [*args, tmp_path]
    else:
        args = [*args, kept]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert line.startswith(f"error: {kept} exists") and "--force" in line
    assert kept.read_text() == "old\n"


def test_sweep_resumes_or_starts_again_but_never_overwrites_silently(tmp_path):
    args = ["sweep", SFT, "--vary", "groups.icc_group=0.02,0.08", "--reps", "4"]
    args += ["--out", tmp_path, "--format", "json"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    before = (tmp_path / "results.csv").read_bytes()
    again = invoke(*args)
    assert again.exit_code == 2
    assert error_lines(again) == [
        f"error: {tmp_path} holds a sweep; add --resume to continue it, --force to start it "
        "again, or choose another --out"
    ]
    assert (tmp_path / "results.csv").read_bytes() == before
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "0 cells run, 2 reused" in resumed.stderr
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert "2 cells run, 0 reused" in forced.stderr
    assert (tmp_path / "results.csv").read_bytes() == before  # same seeds, same numbers
    both = invoke(*args, "--force", "--resume")
    assert both.exit_code == 2 and len(error_lines(both)) == 1


# ---- --out: a file or a folder, and the other is a one-line error ----------------------------


@pytest.mark.parametrize(
    "args, out, says",
    [
        (["simulate", SFT, "--reps", "2"], "FOLDER", "is a folder; --out is one file"),
        (["simulate", SFT, "--reps", "2"], "x.xlsx", "--out must end in .csv, .parquet"),
        (["calibrate", EXAMPLE, "--map", EXAMPLE_MAP], "next.csv", "must end in .toml"),
        (["compare", SFT, "--reps", "4"], "compare.csv", "is a file name; --out is a folder"),
        (["bayes", BTHEB, "--method", "exact"], "FILE", "is a file; --out is a folder"),
        (["sweep", SFT, "--vary", "groups.icc_group=0.02,0.08"], "r.json", "is a folder"),
    ],
)
def test_file_or_folder_mistake_is_one_line(args, out, says, tmp_path):
    (tmp_path / "FOLDER").mkdir()
    (tmp_path / "FILE").write_text("x")
    result = invoke(*args, "--out", tmp_path / out)
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert line.startswith("error: ") and says in line


# ---- --csv-dialect semicolon: what a European Excel opens, and trialsim reads back ------------


def test_semicolon_files_round_trip_through_the_reader(tmp_path):
    from trialsim.io.readers import read_table

    comma, semi = tmp_path / "comma.csv", tmp_path / "semi.csv"
    args = ["simulate", SFT, "--reps", "2", "--seed", "7"]
    assert invoke(*args, "--out", comma).exit_code == 0
    assert invoke(*args, "--out", semi, "--csv-dialect", "semicolon").exit_code == 0
    text = semi.read_text(encoding="utf-8")
    header, first = text.splitlines()[:2]
    assert header.startswith("rep;participant;") and "," not in header
    assert any("," in field for field in first.split(";")), "decimal commas"
    pd.testing.assert_frame_equal(read_table(semi), read_table(comma))
    via_semi = invoke("analyse", semi, "--format", "json")
    via_comma = invoke("analyse", comma, "--format", "json")
    assert json.loads(via_semi.stdout)["results"] == json.loads(via_comma.stdout)["results"]


def test_csv_text_writes_decimal_commas_in_text_columns_too():
    from trialsim.files import csv_text

    frame = pd.DataFrame({"a": [1.5, None], "b": ["x;y", 0.25], "n": [1, 2]})
    assert csv_text(frame, dialect="semicolon") == 'a;b;n\n1,5;"x;y";1\n;0,25;2\n'
    assert csv_text(frame) == "a,b,n\n1.5,x;y,1\n,0.25,2\n"


# ---- examples run twice in a row ---------------------------------------------------------------


def test_every_writing_example_can_run_twice():
    """Every example in --help, README.md and docs/ that writes a file carries --force (a
    second run into the same place would otherwise stop with exit code 2)."""
    import shlex

    from tests.test_examples import DOCS, HELP

    missing = []
    for example in [*HELP, *DOCS]:
        tokens = shlex.split(example.line)
        writes = tokens[1] in WRITES_BY_DEFAULT or any(
            t.split("=")[0] in ("--out", "--plot", "--keep-replicates") for t in tokens
        )
        if writes and example.expect == 0 and "--force" not in tokens:
            missing.append(f"{example.source}: {example.line}")
    assert not missing, "\n".join(missing)
