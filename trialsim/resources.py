"""Will a request fit this machine? Memory estimated from the trial's size before allocating.

A batch of simulated trials is arrays of replicates x participants x visits (outcomes and
person-level fields), so the memory a command needs is, to a good approximation,

    base + chunk replicates x participants x visits x (outcomes + 14 fields) x 8 bytes x factor
         + replicates x (what each replicate keeps after its chunk)

with ``chunk`` the replicates held at once (simulate and power stream 256 at a time per
thread). The factors were measured with ``scripts/bench_memory.py`` (peak RSS of the SFT
scenario, 340 participants x 3 visits x 6 outcomes). A request above the memory available
(``MemAvailable``) or ``--max-memory`` is refused with one line before anything is allocated.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from trialsim.errors import ResourceError, UserError

#: replicates simulated at once when streaming (the seeds' block size)
CHUNK_REPS = 256
#: person-level fields per participant and visit besides the outcomes (rep, participant, arm,
#: site, cluster, group, trainer, visit, month, sessions, blinding, covariates, masks)
PERSON_FIELDS = 14
#: peak bytes per array cell (replicate x participant x visit x field) over the raw 8 bytes:
#: measured for each command (scripts/bench_memory.py)
FACTOR = {"simulate": 4.5, "power": 2.5, "sweep": 2.5, "compare": 4.0, "recruit": 2.0,
          "assurance": 4.0}  # fmt: skip
#: bytes each replicate keeps after its chunk (estimates, SEs, p-values per analysis; power
#: was measured at about 85 bytes per replicate: 368 -> 376 MB from 10^3 to 10^5 replicates)
KEEP_PER_REP = {"simulate": 0, "power": 200, "sweep": 200, "compare": 1000, "recruit": 400,
                "assurance": 4.0}  # fmt: skip
#: the interpreter with numpy, pandas, scipy and trialsim loaded
BASE_BYTES = 250 * 2**20

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Estimate:
    command: str
    bytes: int
    reps: int
    participants: int
    visits: int
    outcomes: int
    chunk: int

    def describe(self) -> str:
        return (
            f"{self.reps:,} replicates x {self.participants:,} participants x "
            f"{self.visits} visits x {self.outcomes} outcome(s) need about "
            f"{format_bytes(self.bytes)}"
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def parse_size(text: str, *, option: str = "--max-memory") -> int:
    """``4G``, ``512M``, ``1.5GiB``, ``2000000`` (bytes) -> bytes; a UserError otherwise."""
    m = _SIZE.match(str(text))
    if not m:
        raise UserError(f"{option} {text!r}: expected a size such as 4G, 512M or 2.5GiB")
    value = float(m.group(1)) * 1024 ** " kmgt".index((m.group(2) or " ").lower())
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{option} {text!r}: must be a positive size such as 4G")
    return int(value)


def available_memory() -> int:
    """Bytes this process may still allocate: ``MemAvailable`` (Linux), else physical memory;
    a cgroup limit lowers it."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            avail = 8 * 2**30
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit_file).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < avail:
            avail = int(text)
    return avail


def estimate(
    command: str,
    *,
    reps: int,
    participants: int,
    visits: int,
    outcomes: int,
    threads: int | None = None,
    streamed: bool = True,
) -> Estimate:
    """The peak memory of ``command`` on ``reps`` replicate trials of the given size."""
    threads = max(1, threads or os.cpu_count() or 1)
    held = min(reps, CHUNK_REPS * threads) if streamed else reps
    cells = held * participants * visits * (outcomes + PERSON_FIELDS)
    total = (
        BASE_BYTES + cells * 8 * FACTOR.get(command, 4.0) + reps * KEEP_PER_REP.get(command, 400)
    )
    return Estimate(command, int(total), reps, participants, visits, outcomes, held)


def check_memory(est: Estimate, limit: int | None = None) -> None:
    """Refuse (:class:`ResourceError`, one line) when ``est`` exceeds ``limit`` bytes (default:
    the memory available now)."""
    source = "--max-memory"
    if limit is None:
        limit, source = available_memory(), "available on this machine"
    if est.bytes <= limit:
        return
    per_rep = max(1, (est.bytes - BASE_BYTES) / max(1, est.reps))
    fit = int(max(0, limit - BASE_BYTES) / per_rep)
    how = (
        f"use --reps {fit:,} or fewer, or run a sweep on Dask (--executor dask)"
        if fit >= 1
        else "the trial itself is too large: fewer participants or sites"
    )
    raise ResourceError(
        f"{est.command}: {est.describe()}, more than the {format_bytes(limit)} {source}; {how} "
        "(or raise --max-memory)"
    )


def check_request(command: str, scenario, reps: int, *, limit: int | None = None) -> Estimate:
    """Estimate and check a request on a validated scenario (see :func:`estimate`)."""
    est = estimate(
        command,
        reps=int(reps),
        participants=int(scenario.n_participants),
        visits=int(scenario.n_visits),
        outcomes=len(scenario.outcomes) + len(getattr(scenario, "covariates", {}) or {}),
    )
    check_memory(est, limit)
    return est


def check_disk(path, need: int) -> None:
    """Refuse (OutputError) when the folder of ``path`` has less than ``need`` bytes free."""
    import shutil
    from pathlib import Path

    from trialsim.errors import OutputError

    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if need > free:
        raise OutputError(
            f"{path}: needs about {format_bytes(need)} but {format_bytes(free)} is free on its "
            "device; use fewer --reps, Parquet, or another folder"
        )
