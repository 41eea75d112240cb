"""Bayesian benchmarks (DESIGN.md §8): one MCMC fit of an SFT-sized trial, cold and warm, and
the exact fast posterior per replicate.

* cold: build the PyMC model of one simulated SFT trial (340 randomised, 27 groups), compile it
  with nutpie and sample (2 chains x 1000 tuning + 1000 draws); target <= 10 s;
* warm: the compiled model with a new dataset (``with_data``) and sampling; target <= 1 s;
* fast: the exact quadrature posterior (:mod:`trialsim.bayes.fast`) on 1 024 simulated trials,
  sufficient statistics included, in µs per replicate (best of three); target <= 1 000 µs.

Wall-clock and process CPU seconds are both printed: on a shared machine CPU time is the
steadier figure. The last line is JSON.

    python scripts/bench_bayes.py [--reps 1024] [--draws 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("PYTENSOR_FLAGS", "blas__ldflags=-lopenblas")

from trialsim.analyse.prepare import ancova_arrays  # noqa: E402
from trialsim.bayes.fast import ScalePrior, fast_posterior  # noqa: E402
from trialsim.bayes.models import model_input  # noqa: E402
from trialsim.bayes.priors import resolve_prior  # noqa: E402
from trialsim.bayes.sampling import sample_model  # noqa: E402
from trialsim.scenario import load_scenario  # noqa: E402
from trialsim.simulate.trial import simulate_trials  # noqa: E402

SFT = "scenarios/sft-19m.toml"


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1024)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()

    s = load_scenario(SFT).with_outcomes(["psp"])
    data = simulate_trials(s, args.reps, seed=1)
    a = ancova_arrays(data, "psp")
    prior = resolve_prior("sceptical", mcid=7.0)
    group = ScalePrior("half-normal", 0.5 * s.outcomes["psp"].sd)

    def fit(rep):
        return sample_model(
            model_input(a, rep),
            prior=prior,
            group_prior=group,
            draws=args.draws,
            tune=args.draws,
            chains=2,
            seed=rep,
        )

    cold_wall, cold_cpu, cold = timed(lambda: fit(0))
    warm = [timed(lambda r=r: fit(r)) for r in (1, 2, 3)]
    warm_wall, warm_cpu, _ = min(warm, key=lambda x: x[0])

    def fast():
        return fast_posterior(a.y, a.X, a.group, a.mask, prior=prior, group_prior=group)

    runs = [timed(fast) for _ in range(3)]
    fast_wall, fast_cpu, post = min(runs, key=lambda x: x[0])
    us_wall = 1e6 * fast_wall / args.reps
    us_cpu = 1e6 * fast_cpu / args.reps

    print(f"MCMC ({cold.sampler}), SFT trial n=340, 2 chains x {args.draws}+{args.draws}:")
    print(
        f"  cold (build + compile + sample): {cold_wall:6.2f} s wall, {cold_cpu:6.2f} s CPU"
        "  (target <= 10 s)"
    )
    print(
        f"  warm (new data, sample)        : {warm_wall:6.2f} s wall, {warm_cpu:6.2f} s CPU"
        "  (target <= 1 s)"
    )
    print(
        f"fast exact posterior, {args.reps} trials: {us_wall:7.1f} µs/replicate wall, "
        f"{us_cpu:7.1f} µs CPU (target <= 1000 µs); failed {int(post.failed.sum())}"
    )
    print(
        json.dumps(
            {
                "bench": "bayes",
                "sampler": cold.sampler,
                "mcmc_cold_s": round(cold_wall, 3),
                "mcmc_cold_cpu_s": round(cold_cpu, 3),
                "mcmc_warm_s": round(warm_wall, 3),
                "mcmc_warm_cpu_s": round(warm_cpu, 3),
                "fast_us_per_rep": round(us_wall, 1),
                "fast_cpu_us_per_rep": round(us_cpu, 1),
                "reps": args.reps,
                "draws": args.draws,
            }
        )
    )


if __name__ == "__main__":
    main()
