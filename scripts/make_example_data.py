"""Make scenarios/data/sft-example.csv: one simulated SFT trial dressed as a real export.

The trial is replicate 0 of scenarios/sft-19m.toml (seed 2016, outcomes PSP, MHRM, WHO-5 and
EQ-5D), written the way a Danish municipality's Excel export looks:

* wide layout: one row per participant, a column per outcome and visit
  (PSP_baseline, PSP_slut = end of treatment, PSP_opfølgning = follow-up);
* Danish column names: deltager, kommune, gruppe (arm: SFT / Kontrol), hold (SFT group),
  træner, tilbudt (sessions offered), fremmøde (sessions attended);
* Excel's Danish CSV dialect: ';' separators, decimal commas, Windows-1252 text;
* participants lost to follow-up have empty cells; there is no ``rep`` column.

Read it with

    trialsim validate scenarios/data/sft-example.csv --map participant=deltager,\
municipality=kommune,arm=gruppe,group=hold,trainer=træner,sessions_offered=tilbudt,\
sessions_attended=fremmøde

Run: python scripts/make_example_data.py [--out PATH]   (same seed -> the same file)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from trialsim.files import atomic_path
from trialsim.scenario import load_scenario
from trialsim.simulate.trial import simulate_trials

ROOT = Path(__file__).resolve().parents[1]
SEED = 2016
OUTCOMES = {"psp": "PSP", "mhrm": "MHRM", "who5": "WHO5", "eq5d": "EQ5D"}
VISITS = ("baseline", "slut", "opfølgning")  # month 0, 9 (end of course), 15
PERSON = {
    "participant": "deltager",
    "municipality": "kommune",
    "arm": "gruppe",
    "group": "hold",
    "trainer": "træner",
    "sessions_offered": "tilbudt",
    "sessions_attended": "fremmøde",
}


def example_frame() -> pd.DataFrame:
    """The wide, Danish-named table of one simulated SFT trial."""
    scenario = load_scenario(ROOT / "scenarios" / "sft-19m.toml").with_outcomes(list(OUTCOMES))
    long = simulate_trials(scenario, [0], seed=SEED).to_frame().drop(columns="rep")
    person = long[long["visit"] == 0][list(PERSON)].reset_index(drop=True)
    person["arm"] = person["arm"].map({"treatment": "SFT", "control": "Kontrol"})
    person.loc[person["arm"] == "Kontrol", ["sessions_offered", "sessions_attended"]] = np.nan
    wide = person.rename(columns=PERSON)
    for name, label in OUTCOMES.items():
        values = long[name].to_numpy().reshape(len(person), len(VISITS))
        for v, visit in enumerate(VISITS):
            wide[f"{label}_{visit}"] = values[:, v]
    for col in ("hold", "træner", "tilbudt", "fremmøde"):
        wide[col] = wide[col].astype("Int64")
    return wide


def write_danish_csv(frame: pd.DataFrame, path: Path) -> None:
    """Excel's Danish CSV: ';', decimal comma, Windows-1252; atomically (temp file, rename)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep=";", decimal=",", index=False, encoding="cp1252", float_format="%.4g")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "scenarios" / "data" / "sft-example.csv")
    args = parser.parse_args()
    frame = example_frame()
    write_danish_csv(frame, args.out)
    print(f"wrote {args.out}: {len(frame)} participants x {len(VISITS)} visits")


if __name__ == "__main__":
    main()
