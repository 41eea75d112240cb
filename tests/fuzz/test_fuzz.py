"""Malformed scenarios and hostile data files give exit 2, one line naming the file or the
key, and no traceback (a quick seeded slice here; the full run under ``-m slow``)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import (
    SCENARIOS,
    classify,
    data_cases,
    mutate,
    run_cases,
    run_inprocess,
    write_case,
)

_RAW = {}


def _sft_raw() -> dict:
    if not _RAW:
        from trialsim.scenario import read_scenario_raw

        _RAW["sft"] = read_scenario_raw(SCENARIOS / "sft-19m.toml")
    return _RAW["sft"]


def _check(tmp_path, seed: int, command: str, extra: list[str]) -> None:
    case = None
    rng = random.Random(seed)
    while case is None:
        case = mutate(_sft_raw(), rng)
    path = write_case(case, tmp_path, seed % 10_000)
    outcome = run_inprocess([command, str(path), *[a.format(tmp=tmp_path) for a in extra]])
    flags = classify(outcome, (path.name, *case.keys))
    assert not any(flags.values()), (case.detail, outcome.exit_code, outcome.stderr, flags)
    assert outcome.exit_code == 2


_SETTINGS = dict(
    derandomize=True,  # seeded: the same examples every run, never flaky
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(max_examples=25, **_SETTINGS)
@given(seed=st.integers(0, 2**31 - 1))
def test_malformed_scenarios_are_one_line_for_validate(tmp_path, seed):
    _check(tmp_path, seed, "validate", [])


@pytest.mark.slow
@settings(max_examples=150, **_SETTINGS)
@given(seed=st.integers(0, 2**31 - 1))
def test_malformed_scenarios_are_one_line_for_simulate(tmp_path, seed):
    _check(tmp_path, seed, "simulate", ["--reps", "2", "--out", "{tmp}/out.csv"])


@pytest.mark.slow
@settings(max_examples=100, **_SETTINGS)
@given(seed=st.integers(0, 2**31 - 1))
def test_malformed_scenarios_are_one_line_for_power(tmp_path, seed):
    _check(tmp_path, seed, "power", ["--reps", "20"])


def test_hostile_data_files_are_one_line_for_analyse(tmp_path):
    for what, path, names in data_cases(tmp_path):
        outcome = run_inprocess(["analyse", str(path)])
        flags = classify(outcome, names)
        assert not any(flags.values()), (what, outcome.exit_code, outcome.stderr, flags)


@pytest.mark.slow
def test_the_full_fuzz_run_in_subprocesses(tmp_path):
    """Real exit codes and hangs (a timeout per run): every count of a failure is 0."""
    result = run_cases(60, 20161, tmp_path, commands=("validate", "simulate", "power"))
    counts = result["counts"]
    flags = ("hang", "traceback", "silent_acceptance", "not_one_line", "names_neither")
    bad = {k: counts.get(k, 0) for k in (*flags, "internal", "crash")}
    assert not any(bad.values()), (bad, result["failures"][:5])
