"""Analytic vs simulated power of the individually randomised group design over a grid.

For each cell (completion, group ICC, treatment groups, group-size CV, dose-response) the SFT
scenario is set to that world -- assessors blinded, dropout completely at random, trainer ICC
0 -- and the effect is chosen so that the closed form gives power 0.7 (where a disagreement
shows most). The default analysis is simulated on the same seed in every cell (common random
numbers) and the difference analytic - simulated is printed in power units and in Monte Carlo
SEs, with the largest absolute difference and where it is.

    .venv/bin/python scripts/power_grid.py                 # 4000 replicates per cell
    .venv/bin/python scripts/power_grid.py --reps 1000 --quick
    .venv/bin/python scripts/power_grid.py --jobs 2 --out results/power_grid.txt

The cells are independent (each seeded alike), so ``--jobs`` runs them in parallel processes
with the same numbers as one process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trialsim.analyse.registry import default_analysis  # noqa: E402
from trialsim.power.curve import size_overrides  # noqa: E402
from trialsim.power.from_scenario import analytic_power, analytic_solve  # noqa: E402
from trialsim.power.simulation import simulate_and_analyse  # noqa: E402
from trialsim.scenario import apply_overrides, read_scenario_raw, scenario_from_dict  # noqa: E402
from trialsim.seeds import BLOCK_SIZE  # noqa: E402

GRID = {
    "completion": (0.3, 0.5, 0.7, 1.0),
    "icc": (0.0, 0.05, 0.15),
    "groups": (8, 27, 60),
    "cv": (0.0, 0.5),
    "dose": ("none", "linear"),
}
QUICK = {
    "completion": (0.3, 0.5, 1.0),
    "icc": (0.05, 0.15),
    "groups": (8, 27),
    "cv": (0.25,),
    "dose": ("none", "linear"),
}


def cell_scenario(completion, icc, groups, cv, dose, target=0.7):
    from trialsim.design.grid import overrides_for

    raw = read_scenario_raw(ROOT / "scenarios" / "sft-19m.toml")
    over = {
        "blinding.assessor_bias": 0.0,
        "dropout.mechanism": "MCAR",
        "dropout.completion_target": completion,
        "groups.icc_group": icc,
        "groups.icc_trainer": 0.0,
        "groups.cv_size": cv,
        "attendance.dose_response": dose,
    }
    raw = apply_overrides(raw, overrides_for(over), source="grid")
    raw = apply_overrides(raw, overrides_for(size_overrides(raw, "n_groups", groups)), source="g")
    s = scenario_from_dict(raw).with_outcomes(["psp"])
    for _ in range(3):  # the effect's spread over attendance grows with it: iterate
        mde = analytic_solve(s, "effect", target)["value"]
        effect = s.outcomes["psp"].effect * mde / analytic_power(s)["effect"]
        raw = apply_overrides(raw, [f"outcomes.psp.effect={effect!r}"], source="grid")
        s = scenario_from_dict(raw).with_outcomes(["psp"])
    return s


def run_cell(cell: tuple, reps: int, seed: int) -> dict:
    """Analytic and simulated power of one grid cell."""
    completion, icc, groups, cv, dose = cell
    t0 = time.perf_counter()
    s = cell_scenario(completion, icc, groups, cv, dose)
    a = analytic_power(s)
    name = default_analysis(s.structure, "psp").name
    ((run,),) = simulate_and_analyse(
        [s],
        [("psp", name)],
        reps=reps,
        seed=seed,
        chunk_size=BLOCK_SIZE,
        threads=None,
        progress=None,
    )
    r = run.arrays()
    power = float(((r["p"] < 0.05) & ~r["failed"]).mean())
    mcse = (power * (1 - power) / reps) ** 0.5
    diff = a["power"] - power
    return dict(
        completion=completion,
        icc=icc,
        groups=a["n_groups"],
        cv=cv,
        dose=dose,
        analytic=a["power"],
        simulated=power,
        mcse=mcse,
        diff=diff,
        diff_mcse=diff / mcse if mcse else float("nan"),
        failed=float(r["failed"].mean()),
        seconds=time.perf_counter() - t0,
    )


def _run_cell_star(args: tuple) -> dict:
    return run_cell(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--quick", action="store_true", help="a 24-cell slice instead of 144")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--out", type=Path, default=None, help="also write the printed table here")
    ap.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes")
    args = ap.parse_args()
    grid = QUICK if args.quick else GRID
    cells = list(itertools.product(*grid.values()))
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    command = "PYTHONPATH=$PWD python scripts/power_grid.py " + " ".join(sys.argv[1:])
    emit(f"# {command}")
    emit(f"{args.reps} replicates per cell, seed {args.seed} in every cell")
    head = (
        f"{'completion':>10}{'icc':>6}{'groups':>7}{'cv':>5}{'dose':>8}{'analytic':>10}"
        f"{'simulated':>18}{'diff':>8}{'MCSE':>7}{'failed':>8}"
    )
    emit(head + "\n" + "-" * len(head))
    work = [(cell, args.reps, args.seed) for cell in cells]
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(args.jobs)
        results = pool.map(_run_cell_star, work)
    else:
        results = map(_run_cell_star, work)
    rows = []
    for row in results:
        rows.append(row)
        emit(
            f"{row['completion']:>10g}{row['icc']:>6g}{row['groups']:>7d}{row['cv']:>5g}"
            f"{row['dose']:>8}{row['analytic']:>10.3f}{row['simulated']:>11.3f} ± "
            f"{row['mcse']:.3f}{row['diff']:>+8.3f}{row['diff_mcse']:>+7.1f}"
            f"{row['failed']:>8.3f}"
        )
    worst = max(rows, key=lambda r: abs(r["diff"]))
    within = sum(abs(r["diff"]) <= 0.015 for r in rows)
    within_mcse = sum(abs(r["diff"]) <= 0.015 + 3 * r["mcse"] for r in rows)
    emit(
        f"max |analytic - simulated| = {abs(worst['diff']):.3f} ({worst['diff_mcse']:+.1f} MCSE) "
        f"at completion {worst['completion']:g}, icc {worst['icc']:g}, {worst['groups']} groups, "
        f"cv {worst['cv']:g}, dose-response {worst['dose']}; "
        f"{within} of {len(rows)} cells within 0.015, {within_mcse} within 0.015 + 3 MCSE; "
        f"|diff| <= 2 MCSE in {sum(abs(r['diff_mcse']) <= 2 for r in rows)}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(args.out)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
