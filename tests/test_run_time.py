"""Run-time estimates of the resource guard (trialsim.run_time): parsing --max-time, the
refusal in one line, and the estimate against the measured time of real runs."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from trialsim import run_time
from trialsim.cli import main
from trialsim.errors import ResourceError, UserError
from trialsim.scenario import load_scenario

SFT = "scenarios/sft-19m.toml"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5d", 129600)]
)
def test_durations_are_parsed(text, seconds):
    assert run_time.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "0", "-5m", "2 weeks", ""])
def test_bad_durations_are_user_errors(text):
    with pytest.raises(UserError, match="--max-time"):
        run_time.parse_duration(text)


def test_the_guess_scales_with_replicates_cells_and_workers():
    s = load_scenario(SFT)
    one = run_time.estimate_time("sweep", s, 1000, cells=1, pilot=False).seconds
    four = run_time.estimate_time("sweep", s, 1000, cells=4, pilot=False).seconds
    four_on_two = run_time.estimate_time("sweep", s, 1000, cells=4, workers=2, pilot=False)
    assert four == pytest.approx(4 * one) and four_on_two.seconds == pytest.approx(2 * one)
    per_rep = run_time.seconds_per_simulated_rep(s, pilot=False)
    work = run_time.WORK_PER_SIMULATED_REP
    assert one == pytest.approx(
        (1000 * work["sweep"] + run_time.FIXED_SIMULATED_REPS["sweep"]) * per_rep
    )
    csv = run_time.estimate_time("simulate", s, 1000, out="x.csv", pilot=False).seconds
    parquet = run_time.estimate_time("simulate", s, 1000, out="x.parquet", pilot=False).seconds
    assert csv / parquet == pytest.approx(work["simulate.csv"] / work["simulate"])
    assert run_time.estimate_time("compare", s, 1000, pilot=False) is None


def test_a_run_over_max_time_is_refused_in_one_line():
    s = load_scenario(SFT)
    est = run_time.estimate_time("power", s, 2000, pilot=False)
    with pytest.raises(ResourceError) as info:
        run_time.check_time(est, 1.0)
    message = str(info.value)
    assert "\n" not in message and "--max-time" in message
    assert f"--reps {int(2000 / est.seconds):,} or fewer" in message


def test_the_command_refuses_before_running(tmp_path):
    out = tmp_path / "sim.parquet"
    start = time.perf_counter()
    result = CliRunner().invoke(
        main, ["simulate", SFT, "--reps", "3000", "--max-time", "1s", "--out", str(out)]
    )
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: simulate: 3,000 replicates")
    assert "more than the 1 s of --max-time" in lines[0] and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert time.perf_counter() - start < 30  # refused up front, not after simulating


def test_the_environment_sets_the_default_limit(monkeypatch):
    monkeypatch.setenv("TRIALSIM_MAX_TIME", "1s")
    result = CliRunner().invoke(main, ["power", SFT, "--reps", "2000", "--method", "simulation"])
    assert result.exit_code == 2 and "--max-time" in result.stderr


def test_a_long_estimate_is_printed(monkeypatch):
    monkeypatch.setattr(run_time, "PRINT_ABOVE_SECONDS", 0.0)
    result = CliRunner().invoke(
        main, ["power", SFT, "--reps", "20", "--method", "simulation", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert "estimate: 20 replicates x 340 participants x 3 visits take about" in result.stderr


def test_the_analytic_method_is_not_estimated(monkeypatch):
    monkeypatch.setenv("TRIALSIM_MAX_TIME", "1s")
    result = CliRunner().invoke(main, ["power", SFT, "--reps", "100000", "--method", "analytic"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "small", "large"), [("power", 2048, 8192), ("simulate", 1024, 4096)]
)
def test_the_estimate_is_within_a_factor_3_of_the_measured_time(command, small, large, tmp_path):
    """Timed on this machine as loaded now (the pilot block sees the same load as the run);
    a factor of 3 either way leaves room for a busy shared machine without flaking."""
    s = load_scenario(SFT)
    for reps in (small, large):
        out = tmp_path / f"sim{reps}.parquet"
        est = run_time.estimate_time(command, s, reps, out=out, pilot=True)
        args = [command, SFT, "--reps", str(reps), "--max-time", "1d"]
        args += ["--out", str(out)] if command == "simulate" else ["--method", "simulation"]
        start = time.perf_counter()
        result = CliRunner().invoke(main, args)
        measured = time.perf_counter() - start
        assert result.exit_code == 0, result.output
        assert 1 / 3 < measured / est.seconds < 3, (reps, est.seconds, measured)
