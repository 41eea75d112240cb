"""How long will a request take? Run time estimated from the trial's size before running.

Every command with ``--reps`` spends its time simulating replicate trials and doing something
with each (fitting the analysis, writing table rows), so its run time is, to a good
approximation,

    seconds = (replicates x work / threads + fixed) x cells / workers
              x (seconds to simulate one replicate on one thread)

with ``work`` what the command does per simulated replicate as a multiple of simulating it
(:data:`WORK_PER_SIMULATED_REP`, measured with ``scripts/bench memory``) and ``cells`` the
sweep's grid cells (1 otherwise). The seconds to simulate one replicate are first guessed from
the trial's size (:data:`SECONDS_PER_CELL`); when that guess says the run takes more than
:data:`PILOT_ABOVE_SECONDS`, one block of 256 replicates of the real scenario is timed on
this machine as it is loaded now (the block also warms the caches the run uses, so the pilot
is not lost). A run estimated above :data:`PRINT_ABOVE_SECONDS` prints its estimate; above
``--max-time`` (default :data:`DEFAULT_MAX_SECONDS`) it is refused with one line.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from trialsim.errors import ResourceError, UserError

#: per simulated replicate, what each command does as a multiple of simulating it on one
#: thread (SFT scenario on 2 cores, scripts/bench memory): power simulates the scenario and
#: its null twin and fits both, on one thread per core; simulate turns the replicate into
#: rows and writes them (CSV text is slower than Parquet); a sweep cell is a power run on
#: one worker (3 cells x 50 000 replicates on --jobs 2: 6.0 min measured, 6.6 min estimated)
WORK_PER_SIMULATED_REP = {
    "power": 3.5,
    "simulate": 3.0,
    "simulate.csv": 8.0,
    "sweep": 1.75,
}
#: one-time work per run (per sweep cell) in simulated replicates on one thread: the dropout
#: calibration of the null scenario (power) or of each cell's scenario and its null twin
#: (sweep), two blocks of 256 each
FIXED_SIMULATED_REPS = {"power": 512, "simulate": 0, "simulate.csv": 0, "sweep": 1024}
#: seconds to simulate one replicate per participant x visit x (outcomes + person fields),
#: one thread, an unloaded 2-core machine (the first guess, before any pilot)
SECONDS_PER_CELL = 0.1e-6
#: a pilot block is timed when the first guess exceeds this many seconds
PILOT_ABOVE_SECONDS = 10.0
#: estimates above this many seconds are printed before the run starts
PRINT_ABOVE_SECONDS = 5.0
#: the default --max-time: a run estimated longer is refused (12 hours: one night)
DEFAULT_MAX_SECONDS = 12 * 3600.0
#: replicates in the pilot block (the simulator draws whole blocks)
PILOT_REPS = 256

_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h|d)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class TimeEstimate:
    command: str
    seconds: float
    reps: int
    cells: int
    participants: int
    visits: int
    piloted: bool

    def describe(self) -> str:
        grid = f"{self.cells:,} cells x " if self.cells > 1 else ""
        return (
            f"{grid}{self.reps:,} replicates x {self.participants:,} participants x "
            f"{self.visits} visits take about {format_duration(self.seconds)}"
        )


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``, ``12 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"


def parse_duration(text: str, *, option: str = "--max-time") -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1.5d`` -> seconds; a UserError otherwise."""
    m = _DURATION.match(str(text))
    if not m:
        raise UserError(f"{option} {text!r}: expected a duration such as 30m, 2h or 1d")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{option} {text!r}: must be a positive duration such as 2h")
    return value


def work_key(command: str, out=None) -> str | None:
    """The :data:`WORK_PER_SIMULATED_REP` entry of ``command`` (None: not estimated)."""
    if command == "simulate" and out is not None and str(out).lower().endswith(".csv"):
        return "simulate.csv"
    return command if command in WORK_PER_SIMULATED_REP else None


def seconds_per_simulated_rep(scenario, *, pilot: bool) -> float:
    """Seconds to simulate one replicate of ``scenario`` on one thread: timed on one block
    (``pilot``) or guessed from its size."""
    if not pilot:
        fields = len(scenario.outcomes) + 14
        return SECONDS_PER_CELL * scenario.n_participants * scenario.n_visits * fields
    from trialsim.simulate import simulate_trials
    from trialsim.simulate.trial import dropout_intercept

    dropout_intercept(scenario)  # cached one-time calibration: the run reuses it
    start = time.perf_counter()
    simulate_trials(scenario, range(PILOT_REPS), seed=0, threads=1)
    return (time.perf_counter() - start) / PILOT_REPS


def estimate_time(
    command: str,
    scenario,
    reps: int,
    *,
    cells: int = 1,
    workers: int = 1,
    out=None,
    pilot: bool | None = None,
) -> TimeEstimate | None:
    """The run time of ``command`` on ``reps`` replicates (of each of ``cells`` sweep cells,
    run by ``workers`` processes); None for a command that is not estimated. ``pilot``:
    True times a block, False only guesses, None times a block when the guess is long."""
    key = work_key(command, out)
    if key is None:
        return None
    threads = 2 if command == "power" else 1  # power's replicate blocks run on one per core
    per_cell = reps * WORK_PER_SIMULATED_REP[key] / threads + FIXED_SIMULATED_REPS[key]
    total = per_cell * cells / max(1, min(workers, cells))

    def seconds(per_rep: float) -> float:
        return total * per_rep

    guess = seconds(seconds_per_simulated_rep(scenario, pilot=False))
    run_pilot = guess > PILOT_ABOVE_SECONDS if pilot is None else pilot
    if run_pilot:
        guess = seconds(seconds_per_simulated_rep(scenario, pilot=True))
    return TimeEstimate(
        command,
        guess,
        int(reps),
        int(cells),
        int(scenario.n_participants),
        int(scenario.n_visits),
        run_pilot,
    )


def check_time(est: TimeEstimate, limit: float | None = None) -> None:
    """Refuse (:class:`ResourceError`, one line) when ``est`` exceeds ``limit`` seconds
    (default :data:`DEFAULT_MAX_SECONDS`)."""
    limit = DEFAULT_MAX_SECONDS if limit is None else limit
    if est.seconds <= limit:
        return
    fit = int(est.reps * limit / est.seconds)
    fewer = f"use --reps {fit:,} or fewer, " if fit >= 1 else ""
    raise ResourceError(
        f"{est.command}: {est.describe()}, more than the {format_duration(limit)} of "
        f"--max-time; {fewer}run a sweep on a Dask cluster (--executor dask --scheduler ...), "
        "or raise --max-time (e.g. --max-time 2d)"
    )
