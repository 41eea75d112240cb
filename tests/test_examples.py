"""Every example runs: the examples of every command's ``--help``, and every ``trialsim ...``
command line in README.md and docs/*.md, on files the repository ships.

Each source (a command's help, the README, a docs page) runs its commands in order in its own
temporary folder holding copies of ``scenarios/``, ``tests/data/`` and ``results/sft-19m/``, so
relative outputs land there and a page may read what an earlier command of it wrote. Commands
are run as written except: ``--reps N`` becomes ``--reps 10``, ``--check-mcmc N`` becomes 1, an
MCMC ``bayes`` samples 50 draws after 50 tuning steps on one chain, ``--scheduler ADDRESS`` is
dropped (a local Dask cluster of ``--jobs`` workers stands in for a remote one), and a server
(``trialsim app``) runs on a free port and passes when it still serves after 20 s. Shell
variables set in the same source (``M="..."``) are substituted. A command shown failing on
purpose carries a trailing comment ``# ... exits with 2 ...`` and must exit with that code.

Help examples that need no simulation (validate, analyse, analyses, reanalyse, report, analytic
power) run in the default test run, in this process; everything else is ``slow`` and runs as a
subprocess, as a user would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from trialsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("scenarios", "tests/data", "results/sft-19m")
SMALL_REPS = "10"
FAST_COMMANDS = ("validate", "analyse", "analyses", "reanalyse", "report")
#: fenced code blocks holding commands (other languages, e.g. text, hold output)
SHELL_FENCES = ("", "bash", "sh", "shell", "console")
#: commands that serve until stopped: they run on --port 0 and must still serve after a while
SERVERS = ("app",)
SERVER_SECONDS = 20


@dataclass(frozen=True)
class Example:
    source: str  # "help:power", "README.md", "docs/start-evaluator.md"
    line: str  # the command as a user would paste it (continuations joined)
    problem: str | None = None  # why it cannot be pasted as shown (a wrapped line)
    expect: int = 0  # exit code: 0, or what a trailing "# exits with N" comment says

    @property
    def argv(self) -> list[str]:
        return rewrite(shlex.split(self.line))[1:]

    @property
    def fast(self) -> bool:
        args = shlex.split(self.line)
        cmd = args[1] if len(args) > 1 else ""
        analytic = cmd == "power" and "analytic" in args
        return self.source.startswith("help:") and (cmd in FAST_COMMANDS or analytic)


# ---- collecting examples -----------------------------------------------------------------------


def help_examples() -> list[Example]:
    """The commands in the ``Example(s):`` block of every command's --help, as printed on an
    80-column terminal (continuation lines ending in a backslash joined)."""
    out = []
    runner = CliRunner()
    for name in sorted(main.commands):
        text = runner.invoke(main, [name, "--help"], terminal_width=80).output
        out += parse_help_examples(f"help:{name}", text)
    return out


def parse_help_examples(source: str, text: str) -> list[Example]:
    out: list[Example] = []
    inside = False
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        header = re.match(r"^Examples?\b[^:]*:\s*(.*)$", line)
        if header and not inside:
            inside = True
            if header.group(1).startswith("trialsim "):  # "Example: trialsim ..." on one line
                out.append(Example(source, header.group(1)))
            continue
        if not inside:
            continue
        if not raw.startswith(" ") and line:  # "Options:" ends the block
            break
        if not line:
            continue
        if current and current[-1].endswith("\\"):
            current.append(line)
            if not line.endswith("\\"):
                out.append(Example(source, _join(current)))
                current = []
            continue
        if line.startswith("trialsim "):
            if line.endswith("\\"):
                current = [line]
            else:
                out.append(Example(source, line))
            continue
        if out:  # a line of a command wrapped without a backslash: pasting it fails
            last = out.pop()
            out.append(
                Example(
                    source,
                    f"{last.line} {line}",
                    problem=f"wrapped onto a new line without a backslash: {line!r}",
                )
            )
    return out


def _join(lines: list[str]) -> str:
    return " ".join(part.rstrip("\\").strip() for part in lines)


def markdown_examples(path: Path) -> list[Example]:
    """``trialsim ...`` lines of the code blocks of a Markdown file (fenced or indented, with
    backslash continuations and ``NAME="..."`` shell variables) and of inline code spans."""
    source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    text = path.read_text(encoding="utf-8")
    variables: dict[str, str] = {}
    out: list[Example] = []
    fenced: str | None = None  # the language of the fenced block we are in
    current: list[str] = []
    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            fenced = None if fenced is not None else raw.strip()[3:].strip()
            continue
        if fenced is not None and fenced not in SHELL_FENCES:
            continue  # e.g. ```text: printed output, not commands
        in_block = fenced is not None or raw.startswith("    ")
        line = raw.strip()
        if in_block:
            m = re.match(r'^([A-Z_][A-Z0-9_]*)="([^"]*)"$', line)
            if m:
                variables[m.group(1)] = m.group(2)
                continue
            expect = re.search(r"\s#\s.*\bexits? with (\d+)", line)
            line = re.sub(r"\s+#\s.*$", "", line)  # a trailing shell comment
            if current:
                current.append(line)
                if not line.endswith("\\"):
                    out.append(Example(source, _subst(_join(current), variables)))
                    current = []
                continue
            if line.startswith("trialsim "):
                if line.endswith("\\"):
                    current = [line]
                else:
                    code = int(expect.group(1)) if expect else 0
                    out.append(Example(source, _subst(line, variables), expect=code))
            continue
        for span in re.findall(r"`(trialsim [^`]+)`", raw):
            if is_command_line(span):
                out.append(Example(source, _subst(span, variables)))
    return out


def is_command_line(span: str) -> bool:
    """An inline code span that is a whole command line, not a mention of a command
    (`trialsim bayes`), a pattern (`trialsim analyse DATA --analysis NAME`) or output."""
    try:
        tokens = shlex.split(span)
    except ValueError:
        return False
    if len(tokens) < 2 or tokens[1] not in main.commands or "--help" in tokens:
        return False
    if any(t == "..." or re.fullmatch(r"[A-Z][A-Z_]*(\.\w+)?", t) for t in tokens):
        return False  # a placeholder: DATA, SCENARIO, N, FILE.csv
    if len(tokens) == 2:
        return tokens[1] == "analyses"  # the one command that takes nothing
    return not tokens[2].startswith("-") or tokens[1] == "reanalyse"


def _subst(line: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$([A-Z_][A-Z0-9_]*)", lambda m: variables.get(m.group(1), m.group(0)), line)


def rewrite(args: list[str]) -> list[str]:
    """Small runs (see the module docstring)."""
    out: list[str] = []
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "--scheduler":
            skip = True
            continue
        if a.startswith("--scheduler="):
            continue
        prev = args[i - 1] if i else ""
        if prev == "--reps":
            a = SMALL_REPS
        elif prev == "--check-mcmc":
            a = "1"
        out.append(a)
    if len(out) > 1 and out[1] in SERVERS:
        out = [a for i, a in enumerate(out) if a != "--port" and out[i - 1] != "--port"]
        out += ["--port", "0"]
    if len(out) > 1 and out[1] == "bayes" and "exact" not in out:
        out += ["--draws", "50", "--tune", "50", "--chains", "1"]
    return out


def doc_examples() -> list[Example]:
    out = markdown_examples(ROOT / "README.md")
    for page in sorted((ROOT / "docs").glob("*.md")):
        out += markdown_examples(page)
    return out


HELP = help_examples()
DOCS = doc_examples()


def _id(example: Example) -> str:
    return f"{example.source}: {example.line[:70]}"


# ---- running them ------------------------------------------------------------------------------

_WORKDIRS: dict[str, Path] = {}


def workdir(source: str, factory) -> Path:
    """A folder per source with copies of the shipped files."""
    if source not in _WORKDIRS:
        base = factory.mktemp(re.sub(r"\W+", "_", source))
        for rel in SHIPPED:
            if (ROOT / rel).exists():
                shutil.copytree(ROOT / rel, base / rel)
        _WORKDIRS[source] = base
    return _WORKDIRS[source]


def run_in_process(example: Example, cwd: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, example.argv)
    text = result.output + (result.stderr if result.stderr_bytes else "")
    if result.exception and not isinstance(result.exception, SystemExit):
        text += f"\n{type(result.exception).__name__}: {result.exception}"
    return result.exit_code, text


def run_subprocess(example: Example, cwd: Path) -> tuple[int, str]:
    cmd = [sys.executable, "-c", "from trialsim.cli import main; main()", *example.argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if example.argv[:1] == [*SERVERS]:
        return run_server(cmd, cwd, env)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def run_server(cmd: list[str], cwd: Path, env: dict) -> tuple[int, str]:
    """A server example passes when it is still serving after :data:`SERVER_SECONDS`; it is
    then stopped."""
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=SERVER_SECONDS)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            return 0, ""
    return proc.returncode if proc.returncode else 1, f"the server stopped:\n{out}"


def check(example: Example, code: int, output: str) -> None:
    tail = "\n".join(output.strip().splitlines()[-6:])
    assert code == example.expect, (
        f"{example.source}: `{example.line}` exited with {code} "
        f"(run as: trialsim {shlex.join(example.argv)}):\n{tail}"
    )


def test_examples_are_found():
    """The collectors see the examples: every command has one, the pages have many."""
    with_examples = {e.source for e in HELP}
    missing = sorted(f"help:{c}" for c in main.commands if f"help:{c}" not in with_examples)
    assert missing == ["help:analyses"], f"commands without an example in --help: {missing}"
    assert len(DOCS) >= 40
    sources = {e.source for e in DOCS}
    assert {"README.md", "docs/start-evaluator.md", "docs/data-schema.md"} <= sources


def test_help_examples_paste_as_shown():
    """A help example wrapped without a backslash fails when pasted."""
    broken = [f"{e.source}: {e.problem}" for e in HELP if e.problem]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("example", [e for e in HELP if e.fast], ids=_id)
def test_help_example_runs(example, tmp_path_factory, monkeypatch):
    cwd = workdir(example.source, tmp_path_factory)
    check(example, *run_in_process(example, cwd, monkeypatch))


@pytest.mark.slow
@pytest.mark.parametrize("example", [e for e in HELP if not e.fast], ids=_id)
def test_help_example_runs_slow(example, tmp_path_factory):
    check(example, *run_subprocess(example, workdir(example.source, tmp_path_factory)))


@pytest.mark.slow
@pytest.mark.parametrize("example", DOCS, ids=_id)
def test_doc_example_runs(example, tmp_path_factory):
    check(example, *run_subprocess(example, workdir(example.source, tmp_path_factory)))


def test_inline_spans_that_are_command_lines():
    assert is_command_line("trialsim analyse tests/data/real/anorexia.csv --reference Cont")
    assert is_command_line("trialsim reanalyse --estimate 0.75 --ci 0.55 1.02")
    assert is_command_line("trialsim analyses")
    assert not is_command_line("trialsim bayes")
    assert not is_command_line("trialsim bayes --method exact")
    assert not is_command_line("trialsim analyse DATA --analysis NAME")
    assert not is_command_line("trialsim simulate ... --out FILE.csv")
    assert not is_command_line("trialsim app: http://127.0.0.1:8000 (planning x; Ctrl+C stops)")


def test_expected_exit_code_from_a_trailing_comment(tmp_path):
    page = tmp_path / "page.md"
    text = "```bash\ntrialsim validate x.csv   # lists what to map; exits with 2\n```\n"
    page.write_text(text, encoding="utf-8")
    (found,) = markdown_examples(page)
    assert (found.line, found.expect) == ("trialsim validate x.csv", 2)


def test_rewrite_keeps_examples_small():
    args = shlex.split(
        "trialsim sweep s.toml --reps 1000 --executor dask --scheduler tcp://h:8786 --jobs 2"
    )
    assert rewrite(args) == [
        "trialsim", "sweep", "s.toml", "--reps", "10", "--executor", "dask", "--jobs", "2",
    ]  # fmt: skip
    assert rewrite(["trialsim", "bayes", "d.csv"])[-6:] == [
        "--draws", "50", "--tune", "50", "--chains", "1",
    ]  # fmt: skip
    assert rewrite(["trialsim", "bayes", "d.csv", "--method", "exact"])[-1] == "exact"


def test_parse_help_examples_joins_and_flags():
    text = """Usage: trialsim x

  Examples:
    trialsim power a.toml --reps 2000
    trialsim power a.toml --outcome psp \\
      --decision all
    trialsim power a.toml --outcome psp --outcome mhrm
    --decision all

Options:
  --reps INTEGER
"""
    found = parse_help_examples("help:power", text)
    assert [e.line for e in found] == [
        "trialsim power a.toml --reps 2000",
        "trialsim power a.toml --outcome psp --decision all",
        "trialsim power a.toml --outcome psp --outcome mhrm --decision all",
    ]
    assert [e.problem is not None for e in found] == [False, False, True]
