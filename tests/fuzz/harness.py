"""A seeded fuzz harness: malformed scenarios and hostile data files against the CLI.

Every case is an input that is invalid by construction (a value of the wrong type, NaN, inf,
a boolean for a number, an out-of-range magnitude, an unknown key, a wrong-shaped array, a
broken ``base`` chain, a hostile data file). The expected outcome is exit code 2 with one line
naming the file or the key/column, and no traceback. :func:`run_cases` counts the outcomes:

    python -m tests.fuzz.harness --cases 300 --seed 1     # prints the counts as JSON

The quick slice runs in the default test run (tests/fuzz/test_fuzz.py), the full run under
``-m slow``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from trialsim.app.toml_write import dumps as to_toml
from trialsim.app.toml_write import value as toml_value

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
BASES = ("sft-19m.toml", "sft-19m-cohort.toml", "sft-19m-municipality.toml",
         "sft-19m-stepped-wedge.toml", "three-arm.toml")  # fmt: skip

#: values that no numeric key accepts
BAD_NUMBERS = (math.nan, math.inf, -math.inf, True, False, "abc", [], {"x": 1}, 1e308, -1e308)
#: values that no array key accepts
BAD_ARRAYS = ((), 5, [[1.0]], ["x"], [True, False], [math.nan], [math.inf, 1.0])
#: string keys with a closed set of values (free text such as name/description excluded)
CHOICE_KEYS = ("randomisation", "mechanism", "dose_response", "type", "rater", "better",
               "prior", "primary_outcome")  # fmt: skip
#: numeric keys where a boolean is tested as well as the bad numbers
FREE_TEXT = ("name", "description", "names", "start_date", "arms", "levels")


# ---- TOML ------------------------------------------------------------------------------------


# ---- mutations --------------------------------------------------------------------------------


def leaves(raw: dict, path=()):
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _set(raw: dict, path, value) -> None:
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@dataclass
class Case:
    kind: str
    detail: str
    text: str  # the scenario's TOML text
    keys: tuple[str, ...] = field(default_factory=tuple)  # a key the message may name


def mutate(raw: dict, rng: random.Random) -> Case | None:
    """One invalid-by-construction mutation of ``raw`` (None when the draw does not apply)."""
    raw = copy.deepcopy(raw)
    paths = list(leaves(raw))
    path, value = rng.choice(paths)
    last = path[-1]
    kind = rng.choice(("number", "number", "array", "choice", "unknown", "base", "shape"))
    dotted = ".".join(path)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        bad = rng.choice(BAD_NUMBERS)
        _set(raw, path, bad)
        return Case("number", f"{dotted} = {toml_value(bad)}", to_toml(raw), (dotted, last))
    if kind == "array":
        if not isinstance(value, list) or last in FREE_TEXT:
            return None
        bad = rng.choice(BAD_ARRAYS)
        _set(raw, path, list(bad) if isinstance(bad, tuple) else bad)
        return Case("array", f"{dotted} = {toml_value(bad)}", to_toml(raw), (dotted, last))
    if kind == "choice":
        if last not in CHOICE_KEYS or not isinstance(value, str):
            return None
        bad = rng.choice(("bogus", "", "normal:abc,def", "normal:0,-5", "MCAR ", 7))
        _set(raw, path, bad)
        return Case("choice", f"{dotted} = {toml_value(bad)}", to_toml(raw), (dotted, last))
    if kind == "unknown":
        parent = path[:-1]
        node = raw
        for part in parent:
            node = node[part]
        node[last + "_typo"] = value
        key = ".".join((*parent, last + "_typo"))
        return Case("unknown", f"{key} added", to_toml(raw), (key, last + "_typo"))
    if kind == "base":
        bad = rng.choice(("missing.toml", "", "self", "cycle"))
        return Case("base", f"base = {bad}", bad, ("base",))
    # shape: cross-key consistency broken
    choice = rng.choice(("visit_months", "names", "effect_by_visit", "allocation", "primary"))
    if choice == "visit_months":
        raw["design"]["visit_months"] = rng.choice(([], [0.0], [9.0, 15.0], [0.0, 15.0, 9.0]))
        return Case("shape", "design.visit_months", to_toml(raw), ("design.visit_months",))
    if choice == "names":
        raw["sites"]["names"] = ["A"]
        return Case("shape", "sites.names", to_toml(raw), ("sites.names",))
    if choice == "effect_by_visit":
        name = next(iter(raw["outcomes"]))
        raw["outcomes"][name]["effect_by_visit"] = rng.choice(([], [0.0], [0.5, 1.0, 1.0, 1.0]))
        key = f"outcomes.{name}.effect_by_visit"
        return Case("shape", key, to_toml(raw), (key,))
    if choice == "allocation":
        raw["design"]["allocation"] = rng.choice(([0.5], [0.3, 0.3], [0.2, 0.2, 0.2, 0.2, 0.2]))
        return Case("shape", "design.allocation", to_toml(raw), ("design.allocation",))
    raw["primary_outcome"] = "rep"
    return Case("shape", "primary_outcome", to_toml(raw), ("primary_outcome",))


def scenario_cases(n: int, seed: int) -> list[Case]:
    """``n`` seeded invalid scenarios made from the library's scenarios."""
    sys.path.insert(0, str(ROOT))
    from trialsim.scenario import read_scenario_raw

    rng = random.Random(seed)
    bases = [read_scenario_raw(SCENARIOS / name) for name in BASES]
    cases: list[Case] = []
    while len(cases) < n:
        case = mutate(rng.choice(bases), rng)
        if case is not None:
            cases.append(case)
    return cases


def write_case(case: Case, folder: Path, index: int) -> Path:
    path = folder / f"case{index:04d}.toml"
    if case.kind == "base":
        target = {"self": path.name, "cycle": f"case{index:04d}b.toml"}.get(case.text, case.text)
        path.write_text(f'base = "{target}"\nname = "x"\n', encoding="utf-8")
        if case.text == "cycle":
            (folder / target).write_text(f'base = "{path.name}"\n', encoding="utf-8")
    else:
        path.write_text(case.text, encoding="utf-8")
    return path


# ---- hostile data files ----------------------------------------------------------------------

GOOD_CSV = "participant,arm,group,visit,psp\n" + "".join(
    f"{i},{'treatment' if i % 2 else 'control'},{(i % 3) + 1 if i % 2 else ''},{v},"
    f"{50 + (i * 7 + v * 3) % 20}\n"
    for i in range(1, 41)
    for v in (0, 9)
)


def data_cases(folder: Path) -> list[tuple[str, Path, tuple[str, ...]]]:
    """Hostile trial-data files: (what, path, names the message may carry)."""
    import numpy as np
    import pandas as pd

    out = []

    def add(what, name, text, keys=()):
        path = folder / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        out.append((what, path, (path.name, *keys)))

    lines = GOOD_CSV.splitlines()
    add("visit inf", "inf.csv", "\n".join([*lines[:5], "99,control,,inf,50", *lines[5:]]) + "\n",
        ("visit",))  # fmt: skip
    add("empty", "empty.csv", "")
    add("header only", "header.csv", lines[0] + "\n")
    add("blank lines", "blank.csv", "\n\n\n")
    add("binary", "binary.csv", bytes(range(256)) * 10)
    add("spaces in names", "spaces.csv",
        "participant,arm,psp_0,psp_0 , psp_0\n1,control,1,2,3\n2,treatment,4,5,6\n",
        ("psp_0",))  # fmt: skip
    add("duplicate names", "dup.csv",
        "participant,arm,psp_0,psp_9,psp_9\n1,control,1,2,3\n2,treatment,4,5,6\n",
        ("psp_9",))  # fmt: skip
    add("wide 10k columns", "wide.csv", ",".join(f"c{i}" for i in range(20000)) + "\n")
    add("unknown suffix", "data.xyz", GOOD_CSV)
    add("text outcome", "text.csv", GOOD_CSV.replace(",50", ",fifty"), ("psp",))
    add("no arm", "noarm.csv", GOOD_CSV.replace("arm", "armx"), ("arm",))
    add("nan visit", "nanvisit.csv", GOOD_CSV.replace(",9,", ",nan,", 3), ("visit",))
    add("negative visit", "negvisit.csv", GOOD_CSV.replace(",9,", ",-1e300,", 3), ("visit",))
    frame = pd.DataFrame({"participant": [1, 2], "arm": ["control", "treatment"],
                          "visit": [0, 0], "psp": [[1, 2], [3]]})  # fmt: skip
    path = folder / "list.parquet"
    frame.to_parquet(path)
    out.append(("parquet list column", path, (path.name, "psp")))
    path = folder / "garbage.parquet"
    path.write_bytes(b"PAR1" + bytes(np.arange(200, dtype=np.uint8)) + b"PAR1")
    out.append(("garbage parquet", path, (path.name,)))
    path = folder / "missing.csv"
    out.append(("missing file", path, (path.name,)))
    path = folder / "adir.csv"
    path.mkdir(exist_ok=True)
    out.append(("a folder", path, (path.name,)))
    return out


# ---- running --------------------------------------------------------------------------------


@dataclass
class Outcome:
    exit_code: int | None  # None: hung (timed out)
    stderr: str
    seconds: float


def run_cli(args: list[str], *, timeout: float = 120.0, cwd: Path | None = None) -> Outcome:
    """Run ``trialsim ARGS`` in a subprocess (real exit codes, real tracebacks)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("trialsim")), *args],
            capture_output=True, text=True, timeout=timeout, cwd=cwd,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, str(exc.stderr or ""), time.monotonic() - start)
    return Outcome(proc.returncode, proc.stderr, time.monotonic() - start)


def run_inprocess(args: list[str], **_) -> Outcome:
    """Run ``trialsim ARGS`` in this process (fast; exit codes as the console script's)."""
    from click.testing import CliRunner

    from trialsim.cli import main as cli

    start = time.monotonic()
    result = CliRunner().invoke(cli, args)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        stderr += "".join(traceback.format_exception(result.exception))
        return Outcome(1, stderr, time.monotonic() - start)
    return Outcome(result.exit_code, stderr, time.monotonic() - start)


def classify(
    outcome: Outcome, names: tuple[str, ...], *, lines_allowed: int = 1
) -> dict[str, bool]:
    """The failure flags of one run of an invalid input (``validate`` of a data file lists
    every problem, one per line: ``lines_allowed`` is then large)."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    text = outcome.stderr
    return {
        "hang": outcome.exit_code is None,
        "traceback": "Traceback (most recent call last)" in text,
        "silent_acceptance": outcome.exit_code == 0,
        "not_one_line": outcome.exit_code == 2 and not 1 <= len(lines) <= lines_allowed,
        "names_neither": outcome.exit_code == 2
        and not any(n.split(".")[-1] in text for n in names if n),
        "internal": outcome.exit_code == 1,
        "crash": outcome.exit_code is not None and outcome.exit_code not in (0, 1, 2),
    }


COMMANDS = {
    "validate": [],
    "simulate": ["--reps", "2", "--out", "{tmp}/out.csv"],
    "power": ["--reps", "20"],
}


def run_cases(
    n: int,
    seed: int,
    folder: Path,
    *,
    commands=("validate",),
    data: bool = True,
    timeout: float = 120.0,
    inprocess: bool = False,
) -> dict:
    """Run ``n`` scenario cases per command (and the data-file cases): the counts.
    ``inprocess`` runs the CLI in this process (fast, but a hang is not timed out)."""
    run = run_inprocess if inprocess else run_cli
    folder.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    exit_codes: Counter = Counter()
    failures: list[dict] = []
    for i, case in enumerate(scenario_cases(n, seed)):
        path = write_case(case, folder, i)
        for command in commands:
            extra = [a.format(tmp=folder) for a in COMMANDS[command]]
            outcome = run([command, str(path), *extra], timeout=timeout)
            flags = classify(outcome, (path.name, *case.keys))
            counts["cases"] += 1
            exit_codes[str(outcome.exit_code)] += 1
            for flag, bad in flags.items():
                counts[flag] += bad
            if any(flags.values()):
                failures.append({"command": command, "case": case.detail, "kind": case.kind,
                                 "exit": outcome.exit_code, "stderr": outcome.stderr[-400:],
                                 "flags": [f for f, b in flags.items() if b]})  # fmt: skip
    if data:
        for what, path, names in data_cases(folder):
            for command in ("validate", "analyse"):
                outcome = run([command, str(path)], timeout=timeout)
                many = 1000 if command == "validate" else 1
                flags = classify(outcome, names, lines_allowed=many)
                counts["cases"] += 1
                exit_codes[str(outcome.exit_code)] += 1
                for flag, bad in flags.items():
                    counts[flag] += bad
                if any(flags.values()):
                    failures.append({"command": command, "case": what, "kind": "data",
                                     "exit": outcome.exit_code, "stderr": outcome.stderr[-400:],
                                     "flags": [f for f, b in flags.items() if b]})  # fmt: skip
    return {"counts": dict(counts), "exit_codes": dict(exit_codes), "failures": failures}


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--commands", default="validate,simulate,power")
    parser.add_argument("--no-data", action="store_true")
    parser.add_argument("--inprocess", action="store_true", help="fast; hangs not timed out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_cases(args.cases, args.seed, Path(tmp), commands=args.commands.split(","),
                           data=not args.no_data, inprocess=args.inprocess)  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
