"""Bayesian benchmarks (DESIGN.md §8): one MCMC fit of an SFT-sized trial, cold and warm, and
the exact fast posterior per replicate.

* cold: a fresh Python process (interpreter start, imports, simulate one SFT trial of 340
  randomised in 27 groups, build the PyMC model, compile it for nutpie, sample 2 chains x
  1000 tuning + 1000 draws, summarise); target <= 10 s. Run ``--repeat`` times; the first
  run on a machine also fills PyTensor's on-disk numba cache (``~/.pytensor``), so it is
  slower than later ones;
* warm: the compiled model with a new dataset (``with_data``), sampling and summary; target
  <= 1 s (best of three);
* fast: the exact quadrature posterior (:mod:`trialsim.bayes.fast`) on 1 024 simulated trials,
  sufficient statistics included, in µs per replicate (best of three); target <= 1 000 µs.

Wall-clock and CPU seconds (process plus children) are both printed: on a shared machine CPU
time is the steadier figure. ``--compiler nutpie`` times nutpie's own compiler instead of the
lean wrapper of :func:`trialsim.bayes.sampling.compile_fast`. The last line is JSON.

    python scripts/bench_bayes.py [--reps 1024] [--draws 1000] [--repeat 3]
        [--compiler fast|nutpie] [--sampler auto|nutpie|pymc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("PYTENSOR_FLAGS", "blas__ldflags=-lopenblas")

SFT = "scenarios/sft-19m.toml"


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, out


def setup(reps: int):
    from trialsim.analyse.prepare import ancova_arrays
    from trialsim.bayes.fast import ScalePrior
    from trialsim.bayes.priors import resolve_prior
    from trialsim.scenario import load_scenario
    from trialsim.simulate.trial import simulate_trials

    s = load_scenario(SFT).with_outcomes(["psp"])
    a = ancova_arrays(simulate_trials(s, reps, seed=1), "psp")
    prior = resolve_prior("sceptical", mcid=7.0)
    return a, prior, ScalePrior("half-normal", 0.5 * s.outcomes["psp"].sd)


def make_fit(a, prior, group, args):
    import pymc  # noqa: F401 - imported here so that the child's phases are separate

    from trialsim.bayes.models import model_input
    from trialsim.bayes.sampling import nutpie_available, sample_model
    from trialsim.bayes.summary import summarise

    nutpie_available()

    def fit(rep):
        run = sample_model(
            model_input(a, rep),
            prior=prior,
            group_prior=group,
            draws=args.draws,
            tune=args.draws,
            chains=2,
            seed=rep,
            sampler=args.sampler,
            compiler=args.compiler,
        )
        return run, summarise(run.idata, mcid=7.0)

    return fit


def child(args) -> None:
    """The cold fit, in this fresh process: print the sampler, the effect's mean and the CPU
    seconds of each phase."""
    phases = {"start": cpu_seconds()}
    a, prior, group = setup(4)
    phases["data"] = cpu_seconds()
    fit = make_fit(a, prior, group, args)
    phases["import"] = cpu_seconds()
    run, summary = fit(0)
    phases["fit"] = cpu_seconds()
    effect = summary["parameters"][0]
    names = list(phases)
    cpu = {b: round(phases[b] - phases[a], 2) for a, b in zip(names, names[1:], strict=False)}
    cpu["start"] = round(phases["start"], 2)
    print(json.dumps({"sampler": run.sampler, "effect_mean": effect["mean"], "cpu": cpu}))


def cold_runs(args) -> list[tuple[float, float, dict]]:
    cmd = [sys.executable, __file__, "--child", "--draws", str(args.draws)]
    cmd += ["--compiler", args.compiler, "--sampler", args.sampler]
    out = []
    for _ in range(args.repeat):
        wall, cpu, proc = timed(
            lambda: subprocess.run(cmd, capture_output=True, text=True, check=True)
        )
        out.append((wall, cpu, json.loads(proc.stdout.strip().splitlines()[-1])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1024)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="cold processes to time")
    parser.add_argument("--compiler", default="fast", choices=("fast", "nutpie"))
    parser.add_argument("--sampler", default="auto", choices=("auto", "nutpie", "pymc"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    cold = cold_runs(args)
    sampler = cold[0][2]["sampler"]
    cold_wall = statistics.median(c[0] for c in cold)
    cold_cpu = statistics.median(c[1] for c in cold)

    from trialsim.bayes.fast import fast_posterior

    a, prior, group = setup(args.reps)
    fit = make_fit(a, prior, group, args)
    fit(0)  # compile in this process
    warm = [timed(lambda r=r: fit(r)) for r in (1, 2, 3)]
    warm_wall, warm_cpu, _ = min(warm, key=lambda x: x[0])

    def fast():
        return fast_posterior(a.y, a.X, a.group, a.mask, prior=prior, group_prior=group)

    runs = [timed(fast) for _ in range(3)]
    fast_wall, fast_cpu, post = min(runs, key=lambda x: x[0])
    us_wall = 1e6 * fast_wall / args.reps
    us_cpu = 1e6 * fast_cpu / args.reps

    print(f"MCMC ({sampler}, {args.compiler} compiler), SFT trial n=340, 2 chains x ", end="")
    print(f"{args.draws}+{args.draws}:")
    each = ", ".join(f"{w:.2f}/{c:.2f}" for w, c, _ in cold)
    phases = " ".join(f"{k} {v:.2f}" for k, v in cold[-1][2]["cpu"].items())
    print(
        f"  cold (new process: import, build, compile, sample, summarise): {cold_wall:6.2f} s "
        f"wall, {cold_cpu:6.2f} s CPU median of {len(cold)} [wall/CPU: {each}] (target <= 10 s)"
    )
    print(f"    CPU s by phase (last cold run; fit = build + compile + sample + summary): {phases}")
    print(
        f"  warm (new data, sample, summarise): {warm_wall:6.2f} s wall, {warm_cpu:6.2f} s CPU"
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
                "sampler": sampler,
                "compiler": args.compiler,
                "mcmc_cold_s": round(cold_wall, 3),
                "mcmc_cold_cpu_s": round(cold_cpu, 3),
                "mcmc_cold_runs": [[round(w, 3), round(c, 3)] for w, c, _ in cold],
                "mcmc_cold_cpu_phases": cold[-1][2]["cpu"],
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
