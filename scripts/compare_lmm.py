"""Write the datasets of tests/test_lmm.py as CSVs for scripts/compare_lmm.R (lmerTest) and
compare trialsim's fit_lmm with the R fits.

Usage: PYTHONPATH=. .venv/bin/python scripts/compare_lmm.py DIR
       Rscript scripts/compare_lmm.R DIR
       PYTHONPATH=. .venv/bin/python scripts/compare_lmm.py DIR   (again: prints the differences)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tests.test_lmm import DATASETS, fit_one, lmm_dataset


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    oracle = json.loads((out / "oracle.json").read_text()) if (out / "oracle.json").exists() else {}
    for name, (kind, seed) in DATASETS.items():
        X, y, terms, reml = lmm_dataset(kind, seed)
        frame = pd.DataFrame({f"x{j}": X[:, j] for j in range(X.shape[1])} | {"y": y})
        for term, ids in terms:
            frame[f"t_{term}"] = ids
        frame.to_csv(out / f"{name}.csv", index=False, float_format="%.17g")
        fit = fit_one(name)
        if name in oracle:
            ref = oracle[name]
            e = fit.estimates
            variance = ref["variance"].items()
            print(
                f"{name:18s} est {e.estimate[0] - ref['estimate']:+.1e} "
                f"se {e.se[0] / ref['se'] - 1:+.1e} df {e.df[0] / ref['df'] - 1:+.1e} "
                f"crit {-2 * fit.loglik[0] - ref['criterion']:+.1e} "
                f"var {[float(np.round(fit.variance[t][0] - v, 9)) for t, v in variance]}"
                f" singular {ref['singular']} boundary {bool(e.boundary[0])}"
            )


if __name__ == "__main__":
    main(sys.argv[1])
