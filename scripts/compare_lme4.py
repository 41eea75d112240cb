"""Dev check: trialsim's batched REML against lme4/lmerTest on simulated partially nested data.

Writes R replicate datasets to a CSV, fits them with ``scripts/compare_lme4.R`` (needs R with
lme4 and lmerTest; e.g. Debian ``r-cran-lmertest``) and prints the largest differences.
Not a test or runtime dependency.

    python scripts/compare_lme4.py --reps 50 --seed 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_reml import partially_nested  # noqa: E402
from trialsim.analyse.reml import fit_reml  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--missing", type=float, default=0.05)
    args = parser.parse_args()
    y, X, cluster = partially_nested(
        np.random.default_rng(args.seed), args.reps, missing=args.missing
    )
    fit = fit_reml(y, X, cluster)
    est = fit.estimates
    stratum = X[..., 3:].argmax(-1) + X[..., 3:].any(-1)
    rows = []
    for r in range(args.reps):
        keep = np.isfinite(y[r])
        rows.append(
            pd.DataFrame(
                {
                    "rep": r,
                    "y": y[r][keep],
                    "treat": X[r][keep, 1],
                    "baseline": X[r][keep, 2],
                    "stratum": stratum[r][keep],
                    "group": np.where(cluster[r] >= 0, cluster[r], 999)[keep],
                }
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.csv", Path(tmp) / "lme4.csv"
        pd.concat(rows).to_csv(data, index=False)
        script = Path(__file__).with_name("compare_lme4.R")
        subprocess.run(["Rscript", str(script), str(data), str(out)], check=True)
        ref = pd.read_csv(out).sort_values("rep").reset_index(drop=True)
    b = est.boundary
    print(
        f"{args.reps} datasets, {b.sum()} on the boundary here,",
        f"{ref.singular.sum()} singular in lme4",
    )
    for name, ours in [
        ("estimate", est.estimate),
        ("se", est.se),
        ("reml_loglik", fit.reml_loglik),
    ]:
        print(f"max |diff| {name:12s} {np.max(np.abs(ours - ref[name])):.2e}")
    rel = np.abs(est.df - ref.df) / ref.df
    print(
        f"max rel diff df (interior) {rel[~b].max():.2e};",
        f"(boundary) {rel[b].max() if b.any() else 0:.2e}",
    )
    print(f"boundary df here: n - p; lmerTest: {ref.df[b].round(2).tolist()[:5]}")
    print(f"our loglik - lme4's: min {np.min(fit.reml_loglik - ref.reml_loglik):.2e}")


if __name__ == "__main__":
    main()
