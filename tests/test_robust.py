"""Hostile input, full disks and huge requests: one clear line (exit 2), internal errors
(exit 1) with a log, nothing half-written, no temporaries, no orphans (issue 16)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trialsim.cli import TrialsimGroup, main
from trialsim.cli.common import friendly
from trialsim.errors import OutputError, ResourceError, UserError
from trialsim.files import atomic_path, remove_stale_temporaries, write_text
from trialsim.io.readers import read_table
from trialsim.scenario import SFT_SCENARIO, ScenarioError, load_scenario

SFT = str(SFT_SCENARIO)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


# ---- errors classified -----------------------------------------------------------------------


def _group():
    @click.group(cls=TrialsimGroup)
    def g() -> None:
        pass

    @g.command()
    @friendly
    def numpy_bug() -> None:
        np.zeros(3).reshape(2, 2)  # a ValueError from numpy: internal

    @g.command()
    @friendly
    def user() -> None:
        raise UserError("scenario.toml: groups.icc_group: must be below 1")

    @g.command()
    @friendly
    def validation() -> None:
        from trialsim.bayes.distributions import parse_design_prior

        parse_design_prior("normal")  # validated where it is parsed: a UserError

    @g.command()
    @friendly
    def contract() -> None:
        from trialsim.power.solve import solve_power

        # a programming-contract violation inside trialsim: a plain ValueError, internal
        solve_power("irgt", effect=None, n_groups=None, group_size=8, n_control=100, sd=10)

    @g.command()
    @friendly
    def foreign() -> None:
        raise ValueError("not raised by trialsim")  # outside the package: internal

    @g.command()
    @friendly
    def disk_full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "out.csv")

    return g


def test_an_internal_error_exits_1_with_one_line_and_a_log_with_the_traceback(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    result = CliRunner().invoke(_group(), ["numpy-bug"])
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "internal error: ValueError: cannot reshape" in line and "report it" in line
    logs = list((tmp_path / "state" / "trialsim" / "errors").glob("error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in line
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "reshape" in text


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("user", "error: scenario.toml: groups.icc_group: must be below 1"),
        ("validation", "error: design prior 'normal': expected family:params"),
        ("disk-full", "error: out.csv: no space left on the device"),
    ],
)
def test_user_errors_exit_2_with_one_line(command, expected):
    result = CliRunner().invoke(_group(), [command])
    assert result.exit_code == 2
    assert one_line_error(result).startswith(expected)


@pytest.mark.parametrize("command", ["foreign", "contract"])
def test_a_plain_value_error_is_internal_wherever_it_was_raised(command, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    result = CliRunner().invoke(_group(), [command])
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "internal error: ValueError" in line and "report it" in line


def test_no_plain_value_error_is_raised_for_user_input_by_validation_modules():
    """Every ``raise ValueError`` left in trialsim is a programming contract (array shapes,
    arguments the command line has already checked) or a pydantic validator (reported as a
    ScenarioError naming the file and key); user input raises UserError."""
    import re

    root = Path(__file__).resolve().parent.parent / "trialsim"
    sites = {
        str(p.relative_to(root)): len(re.findall(r"raise ValueError\(", p.read_text()))
        for p in root.rglob("*.py")
    }
    sites = {k: v for k, v in sites.items() if v}
    assert sites == CONTRACT_VALUE_ERRORS, "classify the new raise ValueError (see errors.py)"


#: where trialsim still raises a plain ValueError, and how many times (see errors.py)
CONTRACT_VALUE_ERRORS = {
    "analyse/gee.py": 1,  # scale: the command line offers a choice
    "analyse/glm.py": 1,  # scale
    "analyse/kenward_roger.py": 1,  # df method: a click choice
    "analyse/lmm.py": 2,  # non-finite rows passed to the engine; Kenward-Roger needs REML
    "analyse/missing.py": 2,  # better: checked when declared
    "analyse/ols.py": 1,  # vcov name
    "analyse/prepare.py": 5,  # array shapes, column index, row rule
    "analyse/reml.py": 1,  # non-finite rows passed to the engine
    "analyse/reml_nested.py": 2,  # non-finite rows passed to the engine (stats, fit)
    "bayes/analysis.py": 4,  # --estimand, --model, --residual, --method: click choices
    "bayes/fast_two.py": 1,  # one SD prior per term
    "bayes/models.py": 4,  # model and residual names, repeated rows, one SD prior per term
    "bayes/repeated.py": 1,  # --method: a click choice
    "bayes/sampling.py": 3,  # compiled data shape, sampler and compiler names
    "power/analytic.py": 3,  # completers, variance_estimation and dist names
    "power/analytic_arms.py": 2,  # adjustment and decision: click choices
    "power/analytic_glm.py": 7,  # library arguments: icc or cv, scale, dist, design inputs
    "power/estimand.py": 1,  # estimand name
    "power/from_scenario_glm.py": 1,  # called for binary and count outcomes only
    "power/solve.py": 3,  # design name, exactly one unknown, scalar arguments
    "power/solve_arms.py": 1,  # decision / adjustment: click choices
    "scenario.py": 8,  # pydantic validators: reported as ScenarioError (file and key)
    "simulate/randomise.py": 1,  # unit name: validated by the scenario
    "simulate/recruitment.py": 1,  # replicate indices
    "simulate/trial.py": 1,  # replicate indices
}


def test_usage_errors_are_one_line():
    result = run("power", SFT, "--no-such-option")
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "--no-such-option" in line and "power --help" in line


@pytest.mark.parametrize(
    "args",
    [
        ("--seed", "-1"),
        ("--seed", str(2**64)),
        ("--alpha", "nan"),
        ("--alpha", "inf"),
        ("--reps", "0"),
        ("--set", "outcomes.psp.sd=nan"),
    ],
)
def test_bad_options_are_refused_in_one_line(args):
    result = run("power", SFT, "--reps", "20", *args)
    assert result.exit_code == 2
    one_line_error(result)


def test_every_scenario_error_is_a_user_error():
    assert issubclass(ScenarioError, UserError) and issubclass(UserError, ValueError)


# ---- strict scenario values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("design.sessions_offered=true", "design.sessions_offered"),
        ("outcomes.psp.sd=true", "outcomes.psp.sd"),
        ("outcomes.psp.effect=1e308", "outcomes.psp.effect"),
        ("outcomes.psp.sd=1e6", "outcomes.psp.sd"),
        ("outcomes.psp.mcid=inf", "outcomes.psp.mcid"),
        ("outcomes.psp.mcid=500", "outcomes.psp.mcid"),
        ("outcomes.psp.step=1000", "outcomes.psp.step"),
        ("outcomes.psp.mean=nan", "outcomes.psp.mean"),
        ("design.visit_months=[]", "design.visit_months"),
        ("design.visit_months=5", "design.visit_months"),
        ("outcomes.psp.effect_by_visit=[]", "outcomes.psp.effect_by_visit"),
        ('design_priors.effect="normal:abc,def"', "design_priors.effect"),
        ('design_priors.effect="normal:0,-5"', "design_priors.effect"),
        ('design_priors.icc="beta:-2,30"', "design_priors.icc"),
        ('analysis.prior="normal:0,-5"', "analysis.prior"),
        ('analysis.group_sd_prior="half-normal:-1"', "analysis.group_sd_prior"),
        ("analysis.rope=[2, -2]", "analysis.rope"),
        ("sites.participants=[]", "sites.participants"),
        ("sites.participants=[100000, 100000, 100000, 100000, 100000, 100000, 100000, 100000,"
         " 100000, 100000, 100000]", "sites.participants"),
    ],
)  # fmt: skip
def test_nonsense_in_a_scenario_names_the_key(override, key):
    with pytest.raises(ScenarioError) as info:
        load_scenario(SFT, [override])
    message = str(info.value)
    assert key in message and "\n" not in message, message


def test_every_library_scenario_stays_valid():
    for path in sorted(SFT_SCENARIO.parent.glob("*.toml")):
        load_scenario(path)


def test_base_chains_that_cannot_be_followed_are_one_line(tmp_path):
    (tmp_path / "a.toml").write_text('base = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('base = "a.toml"\n', encoding="utf-8")
    (tmp_path / "m.toml").write_text('base = "missing.toml"\n', encoding="utf-8")
    (tmp_path / "deep.toml").write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    for name, expected in [
        ("a.toml", "refers back to itself"),
        ("m.toml", "missing.toml"),
        ("deep.toml", "nested too deeply"),
    ]:
        result = run("validate", str(tmp_path / name))
        assert result.exit_code == 2
        assert expected in one_line_error(result)


# ---- huge requests -----------------------------------------------------------------------------


def test_a_billion_replicates_is_refused_at_once():
    start = time.monotonic()
    result = run("power", SFT, "--reps", "1000000000")
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "need about" in line and "--reps" in line
    assert time.monotonic() - start < 5


def test_max_memory_refuses_a_request_above_it(tmp_path):
    result = run("simulate", SFT, "--reps", "10", "--out", str(tmp_path / "a.csv"),
                 "--max-memory", "100M")  # fmt: skip
    assert result.exit_code == 2
    assert "--max-memory" in one_line_error(result)
    assert not list(tmp_path.iterdir())
    result = run("power", SFT, "--reps", "10", "--max-memory", "lots")
    assert result.exit_code == 2 and "4G" in one_line_error(result)


def test_a_trial_of_a_billion_participants_is_refused(tmp_path):
    sites = "[" + ", ".join(["100000"] * 10_000) + "]"
    (tmp_path / "huge.toml").write_text(
        f'base = "{SFT}"\n[sites]\nparticipants = {sites}\nnames = []\n', encoding="utf-8"
    )
    result = run("power", str(tmp_path / "huge.toml"), "--reps", "20")
    assert result.exit_code == 2
    assert "sites.participants" in one_line_error(result)


def test_simulate_streams_in_chunks_and_writes_the_same_bytes(tmp_path, monkeypatch):
    import trialsim.parallel
    from trialsim.simulate import simulate_trials

    monkeypatch.setattr(trialsim.parallel, "thread_count", lambda threads: 1)  # chunks of 256
    out = tmp_path / "sim.csv"
    result = run("simulate", SFT, "--reps", "300", "--seed", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    whole = simulate_trials(load_scenario(SFT), 300, seed=5).to_frame()
    assert out.read_bytes() == whole.to_csv(index=False, na_rep="").encode()
    parquet = tmp_path / "sim.parquet"
    assert (
        run("simulate", SFT, "--reps", "300", "--seed", "5", "--out", str(parquet)).exit_code == 0
    )
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), whole)


def test_the_memory_estimate_grows_with_the_request():
    from trialsim.resources import check_memory, estimate, parse_size

    small = estimate("power", reps=1000, participants=340, visits=3, outcomes=6, threads=2)
    big = estimate("power", reps=10**9, participants=340, visits=3, outcomes=6, threads=2)
    assert small.bytes < 2**30 < big.bytes
    check_memory(small, limit=2 * 2**30)
    with pytest.raises(ResourceError, match="--reps"):
        check_memory(big, limit=2 * 2**30)
    assert parse_size("1.5G") == int(1.5 * 2**30) and parse_size("512M") == 512 * 2**20


# ---- the file system as input -------------------------------------------------------------------


def test_outputs_the_user_can_fix_are_one_line(tmp_path):
    (tmp_path / "taken.csv").mkdir()
    (tmp_path / "file").write_text("x")
    for out, expected in [
        (tmp_path / "taken.csv", "is a folder"),
        (tmp_path / "file" / "x.csv", "in the way"),
        (Path("/proc/self/x.csv"), "not an ordinary folder"),
    ]:
        result = run("simulate", SFT, "--reps", "2", "--out", str(out))
        assert result.exit_code == 2, result.output
        assert expected in one_line_error(result)


def test_a_full_disk_is_one_line_and_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import pandas as pd

    target = tmp_path / "sim.csv"
    target.write_text("old\n")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    result = run("simulate", SFT, "--reps", "2", "--out", str(target), "--force")
    assert result.exit_code == 2
    assert "no space left" in one_line_error(result)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.csv"]


def test_unwritable_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="permission denied"):
        write_text(tmp_path / "a.txt", "x")


def _write_then_signal(tmp_path: Path, sig: int) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import os, signal
        from trialsim.files import atomic_path
        with atomic_path({str(tmp_path / "out.csv")!r}) as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), {sig})
            import time; time.sleep(5)
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_remove_the_temporary(tmp_path, sig):
    proc = _write_then_signal(tmp_path, int(sig))
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leftovers_are_removed_by_the_next_write(tmp_path):
    proc = _write_then_signal(tmp_path, int(signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".out.tmp-")
    write_text(tmp_path / "out.csv", "whole\n")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert remove_stale_temporaries(tmp_path / "out.csv") == []


def test_a_live_process_temporary_is_kept(tmp_path):
    own = tmp_path / f".out.tmp-{os.getppid()}-abc.csv"
    own.write_text("busy")
    with atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("x")
    assert own.exists()


@pytest.mark.slow
def test_a_real_full_disk_is_one_line(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = run("simulate", SFT, "--reps", "50", "--out", str(mount / "sim.csv"))
        assert result.exit_code == 2
        assert "free on its device" in one_line_error(result) or "no space" in result.stderr
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ---- hostile data files -----------------------------------------------------------------------


def _csv(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("inf.csv", "participant,arm,visit,psp\n1,control,0,50\n2,treatment,inf,51\n",
         "column 'visit' has an infinite value (inf) in row 3"),
        ("spaces.csv", "participant,arm,psp_0,psp_0 , psp_0\n1,control,1,2,3\n",
         "columns 'psp_0' and 'psp_0 ' have the same name"),
        ("dup.csv", "participant,arm,psp_9,psp_9\n1,control,1,2\n",
         "columns 'psp_9' and 'psp_9' have the same name"),
        ("empty.csv", "", "the file is empty"),
        ("blank.csv", "\n\n", "holds no text"),
        ("wide.csv", ",".join(f"c{i}" for i in range(6000)) + "\n", "6,000 columns"),
    ],
)  # fmt: skip
def test_hostile_text_files_name_the_file_and_column(tmp_path, name, text, expected):
    path = _csv(tmp_path, name, text)
    with pytest.raises(UserError) as info:
        read_table(path)
    assert str(path) in str(info.value) and expected in str(info.value), str(info.value)


def test_a_parquet_list_column_names_the_column(tmp_path):
    path = tmp_path / "list.parquet"
    pd.DataFrame({"participant": [1, 2], "psp": [[1, 2], [3]]}).to_parquet(path)
    with pytest.raises(UserError, match=r"list.parquet: column 'psp' holds lists"):
        read_table(path)


def test_a_hostile_data_file_is_one_line_on_the_command_line(tmp_path):
    path = _csv(
        tmp_path, "inf.csv", "participant,arm,visit,psp\n1,control,0,50\n2,treatment,inf,51\n"
    )
    for command in ("validate", "analyse"):
        result = run(command, str(path))
        assert result.exit_code == 2
        assert "inf.csv" in one_line_error(result)


# ---- no orphans --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_exits_when_its_parent_dies():
    code = textwrap.dedent(
        """
        import os, sys, time
        from trialsim.design.executors import watch_parent
        if os.fork() == 0:
            watch_parent(os.getppid(), poll=0.05)
            print(os.getpid(), flush=True)
            time.sleep(30)
            sys.exit(0)
        time.sleep(1.0)
        os._exit(0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    child = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_parallel_sweep_leaves_no_worker(tmp_path, sig):
    exe = str(Path(sys.executable).with_name("trialsim"))
    proc = subprocess.Popen(
        [exe, "sweep", SFT, "--vary", "groups.icc_group=0.01,0.05,0.1,0.15", "--reps", "400",
         "--jobs", "2", "--out", str(tmp_path / "sw")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(_children(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    kids = _children(proc.pid)
    kids += [g for k in kids for g in _children(k)]
    assert len(kids) >= 3
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60  # a worker still importing numpy notices on start
    while any(_running(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [k for k in kids if _running(k)] == []


def _watching(pid: int) -> bool:
    """True once ``pid`` runs trialsim's parent watch (a thread named trialsim-watch)."""
    from trialsim.design.executors import WATCH_THREAD_NAME

    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() == WATCH_THREAD_NAME:
                return True
        except OSError:
            continue
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_killed_dask_sweep_leaves_no_worker(tmp_path):
    """The workers of the LocalCluster trialsim starts watch it (a Dask preload): SIGKILL of
    trialsim leaves no process behind (the scheduler and nannies live in trialsim itself)."""
    pytest.importorskip("distributed")
    exe = str(Path(sys.executable).with_name("trialsim"))
    proc = subprocess.Popen(
        [exe, "sweep", SFT, "--vary", "groups.icc_group=0.01,0.05,0.1,0.15", "--reps", "400",
         "--jobs", "2", "--executor", "dask", "--out", str(tmp_path / "sw")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240  # two workers importing Dask on a loaded machine
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [k for k in _children(proc.pid) if _watching(k)]
        assert len(workers) == 2, "the Dask workers never started their parent watch"
        kids = _children(proc.pid)
        kids += [g for k in kids for g in _children(k)]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while any(_running(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [k for k in kids if _running(k)] == []
