"""Benchmarks printed as ratios against references measured in the same run."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.reml import fit_reml
from trialsim.scenario import load_scenario
from trialsim.simulate import simulate_trials

SFT = "scenarios/sft-19m.toml"


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    reps = 8192
    full = load_scenario(SFT)
    psp2 = load_scenario(SFT, ["design.visit_months=[0, 9]"]).with_outcomes(["psp"])
    simulate_trials(psp2, 256, seed=0)  # warm caches (dropout calibration)
    simulate_trials(full, 256, seed=0)
    t_full, _ = best_of(lambda: simulate_trials(full, 2048, seed=1))
    t_psp, _ = best_of(lambda: simulate_trials(psp2, reps, seed=1))
    print(f"simulate, all 6 outcomes x 3 visits: {t_full / 2048 * 1e6:8.1f} us/replicate")
    print(
        f"simulate, PSP x 2 visits:            {t_psp / reps * 1e6:8.1f} us/replicate"
        " (target <= 50)"
    )

    psp = full.with_outcomes(["psp"])
    simulate_trials(psp, 256, seed=0)

    def end_to_end():
        data = simulate_trials(psp, reps, seed=2)
        a = ancova_arrays(data, "psp")
        return a, fit_reml(a.y, a.X, a.group, a.mask)

    t_e2e, (a, fit) = best_of(end_to_end)
    us = t_e2e / reps * 1e6
    print(f"simulate + REML + Satterthwaite:     {us:8.1f} us/replicate (target <= 100)")

    import statsmodels.api as sm

    n_sm = 40
    diffs, t0 = [], time.perf_counter()
    fitted = 0
    for r in range(n_sm):
        ok = a.mask[r]
        treat = a.X[r, ok, 1]
        model = sm.MixedLM(
            a.y[r, ok],
            a.X[r, ok],
            groups=np.where(a.group[r, ok] >= 0, a.group[r, ok], -1),
            exog_re=treat[:, None],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = model.fit(reml=True)
            except Exception:
                continue
        fitted += 1
        # compare interior fits only: statsmodels' default optimiser stops short near the
        # boundary (see tests/test_reml.py, which refits it with tight tolerances)
        if res.converged and not fit.estimates.boundary[r] and float(res.cov_re.iloc[0, 0]) > 1e-3:
            diffs.append(abs(res.fe_params[1] - fit.estimates.estimate[r]))
    t_sm = (time.perf_counter() - t0) / n_sm * 1e6
    ratio = t_sm / us
    print(f"statsmodels MixedLM loop:            {t_sm:8.0f} us/fit ({fitted}/{n_sm} fitted)")
    print(f"ratio statsmodels / trialsim:        {ratio:8.0f}x (target >= 500)")
    print(f"max |effect difference| where both converge: {max(diffs):.2e}")
    print(
        json.dumps(
            {
                "us_per_replicate": round(us, 2),
                "statsmodels_us_per_fit": round(t_sm),
                "ratio": round(ratio),
                "max_abs_diff": float(max(diffs)),
            }
        )
    )


if __name__ == "__main__":
    main()
