"""Dev check: trialsim's nested REML (cluster + group intercepts) against lme4/lmerTest.

Fits the same datasets with ``fit_reml_nested`` and with ``scripts/compare_lme4_nested.R``
(``lmer(y ~ 0 + X + (1 | cluster) + (0 + in_group | group))``, REML, Satterthwaite df; needs
R with lme4 and lmerTest, e.g. Debian ``r-cran-lmertest``) and prints the largest
differences. Datasets: the synthetic municipality-like and stepped-wedge-like batches of
tests/test_reml_nested.py, and SFT municipality / stepped-wedge trials as ``mixed-cluster``
analyses them. Not a test or runtime dependency.

    python scripts/compare_lme4_nested.py --reps 5 --seed 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import CLEAN, scenario  # noqa: E402
from tests.test_reml_nested import masked_design, nested_trial  # noqa: E402
from trialsim.analyse.prepare import ancova_arrays  # noqa: E402
from trialsim.analyse.reml_nested import fit_reml_nested  # noqa: E402
from trialsim.simulate import simulate_trials  # noqa: E402


def datasets(reps: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(label, Xy, cluster, group) batches with ``used`` = rows with a non-zero design."""
    rng = np.random.default_rng(seed)
    out = []
    for label, kwargs in [
        ("synthetic municipality", dict(missing=0.05)),
        ("synthetic stepped wedge", dict(stepped=True, missing=0.05)),
        ("synthetic, no cluster variance", dict(icc_cluster=0.0, icc_group=0.05)),
    ]:
        y, X, cluster, group = nested_trial(rng, reps, **kwargs)
        Xy, used = masked_design(y, X)
        out.append((label, Xy, cluster, group, used))
    for design in ("municipality", "stepped-wedge"):
        s = scenario(
            *CLEAN,
            f"design.randomisation='{design}'",
            "groups.icc_group=0.1",
            "groups.icc_municipality=0.05",
        )
        a = ancova_arrays(simulate_trials(s, reps, seed=seed), "psp")
        out.append((f"SFT {design}", a.Xy, a.cluster, a.group, a.mask))
    return out


def long_table(Xy, cluster, group, used) -> pd.DataFrame:
    rows = []
    p = Xy.shape[-1] - 1
    for r in range(len(Xy)):
        keep = used[r]
        frame = {"rep": r, "y": Xy[r, keep, -1]}
        frame.update({f"x{j}": Xy[r, keep, j] for j in range(p)})
        frame.update(cluster=cluster[r][keep], group=group[r][keep])
        rows.append(pd.DataFrame(frame))
    return pd.concat(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4, help="datasets per kind (5 kinds)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    script = Path(__file__).with_name("compare_lme4_nested.R")
    worst = {}
    for label, Xy, cluster, group, used in datasets(args.reps, args.seed):
        fit = fit_reml_nested(Xy, cluster, group, used)
        est = fit.estimates
        with tempfile.TemporaryDirectory() as tmp:
            data, out = Path(tmp) / "data.csv", Path(tmp) / "lme4.csv"
            long_table(Xy, cluster, group, used).to_csv(data, index=False)
            subprocess.run(["Rscript", str(script), str(data), str(out)], check=True)
            ref = pd.read_csv(out).sort_values("rep").reset_index(drop=True)
        gap = fit.reml_loglik - ref.reml_loglik
        same = np.abs(gap) < 1e-6  # lme4 reached the same optimum
        diffs = {
            "estimate": np.abs(est.estimate - ref.estimate),
            "se": np.abs(est.se - ref.se),
            "df (relative)": np.abs(est.df - ref.df) / ref.df,
        }
        print(
            f"{label}: {len(ref)} datasets, {est.boundary.sum()} boundary here, "
            f"{ref.singular.sum()} singular in lme4, {same.sum()} at lme4's optimum; "
            f"our loglik - lme4's: min {gap.min():.1e}, max {gap.max():.1e}"
        )
        for name, d in diffs.items():
            print(f"   max |diff| {name:14s} {d[same].max():.1e}  (all: {d.max():.1e})")
            worst[name] = max(worst.get(name, 0.0), d[same].max())
        if (~same).any():
            print(f"   not at lme4's optimum: reps {np.flatnonzero(~same).tolist()}")
    print("overall, at a common optimum:", {k: f"{v:.1e}" for k, v in worst.items()})


if __name__ == "__main__":
    main()
