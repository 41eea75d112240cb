"""Peak memory (RSS) of `trialsim simulate` and `trialsim power` against the replicates.

Each run is a fresh process; its peak resident set is read from getrusage(RUSAGE_CHILDREN)
of a wrapper that runs only it. Usage:

    scripts/bench memory                  # 10^3 and 10^4 replicates (about 3 minutes)
    scripts/bench memory 1000 100000      # 10^3 and 10^5 (about 30 minutes: 1 GB of Parquet)

and prints the ratio of the peaks at the largest and the smallest count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIALSIM = str(Path(sys.executable).with_name("trialsim"))
SCENARIO = str(ROOT / "scenarios" / "sft-19m.toml")

WRAPPER = """
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.monotonic() - t)
"""


def peak(args: list[str]) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True)
    rc, kib, seconds = out.stdout.split()
    if int(rc) != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit code {rc}")
    return int(rc), int(kib) / 1024, float(seconds)


def main() -> None:
    reps_list = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for reps in reps_list:
            out = Path(tmp) / "sim.parquet"
            _, mib, sec = peak([TRIALSIM, "simulate", SCENARIO, "--reps", str(reps), "--out",
                                str(out)])  # fmt: skip
            rows.append({"command": "simulate (parquet)", "reps": reps, "peak_mib": round(mib),
                         "seconds": round(sec, 1)})  # fmt: skip
            out.unlink()
            _, mib, sec = peak([TRIALSIM, "power", SCENARIO, "--reps", str(reps), "--format",
                                "json"])  # fmt: skip
            rows.append({"command": "power", "reps": reps, "peak_mib": round(mib),
                         "seconds": round(sec, 1)})  # fmt: skip
            print(json.dumps(rows[-2:]), flush=True)
    print(f"{'command':<20} {'reps':>8} {'peak MiB':>9} {'seconds':>8}")
    for r in rows:
        print(f"{r['command']:<20} {r['reps']:>8} {r['peak_mib']:>9} {r['seconds']:>8}")
    ratios = {}
    for command in dict.fromkeys(r["command"] for r in rows):
        peaks = [r["peak_mib"] for r in rows if r["command"] == command]
        ratios[command] = round(peaks[-1] / peaks[0], 3)
        print(f"{command}: peak at {reps_list[-1]:,} / at {reps_list[0]:,} replicates = "
              f"{ratios[command]:.3f} (goal: within 1.10)")  # fmt: skip
    print(json.dumps({"memory": rows, "peak_ratio": ratios}))


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
