"""Sampling a PyMC model: nutpie when installed (compiled once per model structure and data
shape, then reused with new data), PyMC's own NUTS otherwise.

A compiled nutpie model is cached per (model, prior family, residual, data shape); a new
dataset of the same shape only swaps the ``pm.Data`` values (``CompiledModel.with_data``), so
analysing many replicates costs one compilation (Seyboldt et al., nutpie documentation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from trialsim.bayes.fast import ScalePrior
from trialsim.bayes.models import ModelInput, build_model, data_values
from trialsim.bayes.priors import EffectPrior

_COMPILED: dict[tuple, object] = {}


@dataclass(frozen=True)
class SamplerRun:
    """An InferenceData with how it was obtained."""

    idata: object
    sampler: str
    compiled_now: bool
    seconds: float


def nutpie_available() -> bool:
    try:
        import nutpie  # noqa: F401
    except ImportError:
        return False
    return True


def _key(data: ModelInput, prior: EffectPrior, group_prior: ScalePrior, residual: str):
    return (data.kind, prior.flat, group_prior.family, group_prior.nu, residual, data.shape_key)


def sample_model(
    data: ModelInput,
    *,
    prior: EffectPrior,
    group_prior: ScalePrior,
    residual: str = "normal",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 0,
    target_accept: float = 0.9,
    sampler: str = "auto",
) -> SamplerRun:
    """Sample the posterior of ``data``'s model; ``sampler`` is auto, nutpie or pymc."""
    if sampler not in ("auto", "nutpie", "pymc"):
        raise ValueError(f"sampler must be auto, nutpie or pymc, got {sampler!r}")
    use_nutpie = sampler == "nutpie" or (sampler == "auto" and nutpie_available())
    start = time.perf_counter()
    if use_nutpie:
        import nutpie

        key = _key(data, prior, group_prior, residual)
        compiled = _COMPILED.get(key)
        compiled_now = compiled is None
        if compiled_now:
            model = build_model(data, prior=prior, group_prior=group_prior, residual=residual)
            compiled = nutpie.compile_pymc_model(model)
            _COMPILED[key] = compiled
        else:
            compiled = compiled.with_data(**data_values(data, prior, group_prior))
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            cores=min(chains, 2),
            target_accept=target_accept,
            progress_bar=False,
        )
        return SamplerRun(idata, "nutpie", compiled_now, time.perf_counter() - start)
    import pymc as pm

    model = build_model(data, prior=prior, group_prior=group_prior, residual=residual)
    idata = pm.sample(
        model=model,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=1,
        random_seed=seed,
        target_accept=target_accept,
        progressbar=False,
        compute_convergence_checks=False,
    )
    return SamplerRun(idata, "pymc", True, time.perf_counter() - start)
