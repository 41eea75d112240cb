"""Sweep benchmarks: throughput with 1 and 2 local workers, and peak memory against replicates.

Usage: python scripts/bench_sweep.py [--cells 4] [--reps 1000] [--mem-reps 1024 4096]

* throughput: the same sweep (``--cells`` values of groups.icc_group on the SFT scenario, the
  default mixed model) run serially (one worker, one thread: the reference), with ``--jobs 1``
  (one worker running chunks of replicates on all cores' threads, the default) and with
  ``--jobs 2`` (two worker processes of one thread each); replicate trials per second (each
  replicate is simulated and analysed with and without the effect) and the speed-ups over the
  serial run, wall clock including worker start-up (about 2-3 CPU seconds per spawned worker
  to import the scientific stack), plus the CPU seconds used (this process and its workers)
  and the load average, since on a shared machine wall time also measures the other tenants.
  The three tables must agree.
* memory: one sweep cell in a fresh Python process per replicate count (chunks of 512
  replicates), peak resident set size (``ru_maxrss``) and peak traced Python allocations
  (``tracemalloc``); flat means the larger count does not need more memory.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "sft-19m.toml"

_MEMORY_CHILD = """
import json, resource, sys, tomllib, tracemalloc
from pathlib import Path
from trialsim.design.sweep import cell_task, run_cell
path = Path(sys.argv[1]); reps = int(sys.argv[2])
raw = tomllib.loads(path.read_text())
settings = {"seed": 1, "reps": reps, "analyses": ["mixed"], "outcome": None, "alpha": 0.05}
task = cell_task(raw, {"groups.icc_group": 0.05}, settings, 512, path)
task["threads"] = 1  # with T threads T chunks are in flight: the bound is T chunks
run_cell(dict(task, reps=64))  # warm up imports and caches before measuring
tracemalloc.start()
record = run_cell(task)
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
assert record["error"] is None, record["error"]
print(json.dumps({"reps": reps, "seconds": record["seconds"], "traced_peak_mb": traced / 2**20,
                  "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def throughput(cells: int, reps: int) -> dict:
    from trialsim.design.grid import parse_vary
    from trialsim.design.sweep import run_sweep

    axes = [parse_vary(f"groups.icc_group=0.02:0.12:{cells}")]
    out = {}
    tables = {}
    # (label, worker processes, threads per cell): the serial reference, then the two ways
    # of using both cores (one worker running chunks on threads, the default for --jobs 1;
    # two workers of one thread each)
    with tempfile.TemporaryDirectory() as tmp:  # warm caches (imports, dropout calibration)
        run_sweep(SCENARIO, axes, reps=64, out=tmp, seed=1, jobs=1, threads=1, plots=False)
    runs = (("serial", 1, 1, "1 thread"), ("jobs1", 1, None, "threads on all cores"))
    runs += (("jobs2", 2, None, "2 workers x 1 thread"),)
    for label, jobs, threads, how in runs:
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu_start = time.perf_counter(), os.times()
            result = run_sweep(
                SCENARIO, axes, reps=reps, out=tmp, seed=1, jobs=jobs, threads=threads, plots=False
            )
            seconds, cpu_end = time.perf_counter() - start, os.times()
        # CPU seconds of this process and its workers: on a busy machine wall time measures
        # the other tenants as much as trialsim
        cpu = sum(cpu_end[:4]) - sum(cpu_start[:4])
        out[f"{label}_cpu_seconds"] = round(cpu, 2)
        tables[label] = result.table.drop(columns="seconds")
        out[f"{label}_seconds"] = round(seconds, 2)
        out[f"{label}_reps_per_second"] = round(cells * reps / seconds, 1)
        print(
            f"{label:<7} ({how}): {cells} cells x "
            f"{reps} replicates in {seconds:.1f} s ({cells * reps / seconds:.0f} replicate "
            f"trials/s; {cpu:.1f} CPU s incl. workers)"
        )
    for label in ("jobs1", "jobs2"):
        out[f"speedup_{label}"] = round(out["serial_seconds"] / out[f"{label}_seconds"], 2)
    out["tables_identical"] = bool(
        tables["serial"].equals(tables["jobs1"]) and tables["serial"].equals(tables["jobs2"])
    )
    print(
        f"speed-up over serial: --jobs 1 (threads) {out['speedup_jobs1']:.2f}x, --jobs 2 "
        f"{out['speedup_jobs2']:.2f}x; tables identical: {out['tables_identical']}"
    )
    return out


def memory(rep_counts: list[int]) -> dict:
    out = {}
    env = dict(os.environ)
    for reps in rep_counts:
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, str(SCENARIO), str(reps)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        m = json.loads(done.stdout.strip().splitlines()[-1])
        out[f"reps{reps}_rss_peak_mb"] = round(m["rss_peak_mb"], 1)
        out[f"reps{reps}_traced_peak_mb"] = round(m["traced_peak_mb"], 1)
        print(
            f"{reps} replicates: peak RSS {m['rss_peak_mb']:.0f} MB, peak traced "
            f"{m['traced_peak_mb']:.1f} MB ({m['seconds']:.1f} s)"
        )
    small, large = rep_counts[0], rep_counts[-1]
    out["rss_ratio"] = round(out[f"reps{large}_rss_peak_mb"] / out[f"reps{small}_rss_peak_mb"], 3)
    out["traced_ratio"] = round(
        out[f"reps{large}_traced_peak_mb"] / out[f"reps{small}_traced_peak_mb"], 3
    )
    print(f"{large}/{small} replicates: RSS x{out['rss_ratio']}, traced x{out['traced_ratio']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--mem-reps", type=int, nargs=2, default=[1024, 4096])
    args = parser.parse_args()
    result = {
        "benchmark": "sweep",
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cells": args.cells,
        "reps_per_cell": args.reps,
    }
    result.update(throughput(args.cells, args.reps))
    result.update(memory(sorted(args.mem_reps)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
