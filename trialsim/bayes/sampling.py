"""Sampling a PyMC model: nutpie when installed (compiled once per model structure and data
shape, then reused with new data), PyMC's own NUTS otherwise.

A compiled nutpie model is cached per (model, prior family, residual, data shape); a new
dataset of the same shape only swaps the ``pm.Data`` values, so analysing many replicates
costs one compilation (Seyboldt et al., nutpie documentation).

Compilation cost. ``nutpie.compile_pymc_model`` wraps PyTensor's numba functions in a
``numba.cfunc`` whose generic data-extraction and error-message code is recompiled in every
new Python process (about 14 s CPU here, for any model). :func:`compile_fast` builds the same
nutpie model with a lean wrapper instead: the PyTensor log-density/gradient and expansion
functions (which PyTensor caches on disk in ``~/.pytensor/numba``) are called from a small
generated ``cfunc`` that reads all ``pm.Data`` values from one float64 buffer (nutpie's "user
data" pointer), with plain loops and no string formatting; it compiles in about 2 s. Same log
density, same sampler, same draws for the same seed. It relies on nutpie internals
(``nutpie.compile_pymc``), so any failure falls back to ``compile_pymc_model``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from trialsim.bayes.fast import ScalePrior
from trialsim.bayes.models import (
    ModelInput,
    build_model,
    data_values,
    uses_sufficient_statistics,
)
from trialsim.bayes.priors import EffectPrior

_COMPILED: dict[tuple, object] = {}
COMPILERS = ("fast", "nutpie")


@dataclass(frozen=True)
class FastCompiled:
    """A nutpie model compiled by :func:`compile_fast`; :meth:`with_data` swaps the data."""

    compiled: object  # nutpie.compile_pymc.CompiledPyMCModel
    layout: dict  # pm.Data name -> (offset, size, shape) in the user-data buffer
    size: int

    def pack(self, values: dict) -> np.ndarray:
        buf = np.zeros(self.size)
        for name, (offset, size, shape) in self.layout.items():
            v = np.asarray(values[name], dtype=float)
            if v.shape != shape:
                raise ValueError(f"pm.Data {name!r} has shape {v.shape}, compiled for {shape}")
            buf[offset : offset + size] = v.ravel()
        return buf

    def with_data(self, **values) -> FastCompiled:
        buf = self.pack(values)
        return dataclasses.replace(self, compiled=dataclasses.replace(self.compiled, user_data=buf))


def _wrapper_source(name: str, n_dim: int, n_out: int, args: list, layout: dict, size: int):
    """Source of a nutpie C callback calling the PyTensor numba function ``inner``."""
    unpack = [
        f"    a{i} = buf[{layout[n][0]}:{layout[n][0] + layout[n][1]}].reshape({layout[n][2]!r})"
        for i, n in enumerate(args)
    ]
    call = ", ".join(["x", *(f"a{i}" for i in range(len(args)))])
    head = [
        f"    x = numba.carray(x_, ({n_dim},))",
        f"    buf = numba.carray(ud_, ({size},))",
        *unpack,
    ]
    if name == "logp":
        body = [
            f"def logp(dim, x_, out_, logp_, ud_):\n    if dim != {n_dim}:\n        return -1",
            *head,
            f"    out = numba.carray(out_, ({n_dim},))",
            f"    value, grad = inner({call})",
            "    v = value[()]",
            "    numba.carray(logp_, (1,))[0] = v",
            f"    for i in range({n_dim}):",
            "        out[i] = grad[i]",
            "        if not math.isfinite(grad[i]):",
            "            return 3",
            "    if not math.isfinite(v):",
            "        return 4",
            "    return 0",
        ]
    else:
        body = [
            "def expand(dim, expanded, x_, out_, ud_):",
            f"    if dim != {n_dim} or expanded != {n_out}:\n        return -1",
            *head,
            f"    out = numba.carray(out_, ({n_out},))",
            f"    (values,) = inner({call})",
            f"    for i in range({n_out}):",
            "        out[i] = values[i]",
            "    return 0",
        ]
    return "\n".join(body) + "\n"


def _cfunc(source: str, name: str, inner, signature):
    """``numba.cfunc`` of the wrapper ``source`` calling ``inner`` (not cached on disk: the
    cached library would refer to ``inner``'s per-process symbol names, and a cache miss costs
    more than compiling; measured in scripts/bench_bayes.py)."""
    import numba

    namespace = {"numba": numba, "math": math, "inner": inner}
    exec(source, namespace)  # noqa: S102 - generated from shapes and names only
    return numba.cfunc(signature)(namespace[name])


def compile_fast(model) -> FastCompiled:
    """Compile a PyMC model for nutpie with a lean C wrapper (see the module docstring).

    Raises ``TypeError`` when a ``pm.Data`` is not floating point (use
    ``nutpie.compile_pymc_model``).
    """
    import numba
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _make_functions,
        _prepare_dims_and_coords,
        _wrap_with_lock,
    )
    from pymc.initial_point import make_initial_point_fn

    initial = make_initial_point_fn(
        model=model,
        jitter_rvs=set(model.free_RVs),
        default_strategy="support_point",
        return_transformed=True,
    )
    n_dim, n_out, logp_pt, expand_pt, initial_fn, shape_info = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=_wrap_with_lock(initial),
        var_names=None,
    )
    shared = {}
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        value = np.asarray(var.get_value())
        if value.dtype != np.float64:
            raise TypeError(f"pm.Data {var.name!r} is {value.dtype}, not float64")
        shared[var.name] = value
    layout, offset = {}, 0
    for name, value in shared.items():
        layout[name] = (offset, value.size, value.shape)
        offset += value.size
    size = max(offset, 1)
    D = numba.types.double
    ptr = numba.types.CPointer(D)
    u64 = numba.types.uint64
    signatures = {
        "logp": numba.types.int64(u64, ptr, ptr, ptr, ptr),
        "expand": numba.types.int64(u64, u64, ptr, ptr, ptr),
    }
    funcs = {}
    for name, fn in (("logp", logp_pt), ("expand", expand_pt)):
        args = [var.name for var in fn.get_shared()]
        source = _wrapper_source(name, n_dim, n_out, args, layout, size)
        funcs[name] = _cfunc(source, name, fn.vm.jit_fn, signatures[name])
    dims, coords = _prepare_dims_and_coords(model, shape_info)
    fast = FastCompiled(None, layout, size)
    compiled = CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=funcs["logp"],
        compiled_expand_func=funcs["expand"],
        initial_point_func=initial_fn,
        shared_data={},
        user_data=fast.pack(shared),
        n_expanded=n_out,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
    )
    return dataclasses.replace(fast, compiled=compiled)


def _compile(model, compiler: str):
    """(compiled, with_data) for nutpie; ``fast`` falls back to nutpie's own compiler."""
    import nutpie

    if compiler == "fast":
        try:
            return compile_fast(model)
        except Exception as exc:  # noqa: BLE001 - nutpie internals changed or unsupported data
            warnings.warn(
                f"fast nutpie compilation failed ({exc}); using nutpie.compile_pymc_model, "
                "which takes ~15 s more",
                RuntimeWarning,
                stacklevel=3,
            )
    return nutpie.compile_pymc_model(model)


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


def _key(data: ModelInput, prior: EffectPrior, term_priors: tuple, residual: str):
    # with sufficient statistics the data shapes do not depend on the number of participants
    shape = data.shape_key[1:] if uses_sufficient_statistics(residual) else data.shape_key
    return (
        data.kind,
        prior.flat,
        tuple((tp.family, tp.nu) for tp in term_priors),
        tuple(name for name, _, _ in data.random_terms),
        data.centred,
        residual,
        shape,
        data.arm_index,
    )


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
    compiler: str = "fast",
    term_priors: tuple[ScalePrior, ...] | None = None,
) -> SamplerRun:
    """Sample the posterior of ``data``'s model; ``sampler`` is auto, nutpie or pymc.

    ``compiler`` (nutpie only): ``fast`` (:func:`compile_fast`, the default) or ``nutpie``
    (``nutpie.compile_pymc_model``). ``term_priors``: one SD prior per random-intercept
    term of ``data`` (default ``group_prior`` for each)."""
    term_priors = tuple(term_priors) if term_priors else (group_prior,) * len(data.random_terms)
    given = {"prior": prior, "group_prior": group_prior, "residual": residual}
    if sampler not in ("auto", "nutpie", "pymc"):
        raise ValueError(f"sampler must be auto, nutpie or pymc, got {sampler!r}")
    if compiler not in COMPILERS:
        raise ValueError(f"compiler must be one of {', '.join(COMPILERS)}, got {compiler!r}")
    use_nutpie = sampler == "nutpie" or (sampler == "auto" and nutpie_available())
    start = time.perf_counter()
    if use_nutpie:
        import nutpie

        key = (*_key(data, prior, term_priors, residual), compiler)
        compiled = _COMPILED.get(key)
        compiled_now = compiled is None
        if compiled_now:
            model = build_model(data, **given, term_priors=term_priors)
            compiled = _compile(model, compiler)
            _COMPILED[key] = compiled
        else:
            values = data_values(data, prior, group_prior, residual, term_priors)
            compiled = compiled.with_data(**values)
        if isinstance(compiled, FastCompiled):
            compiled = compiled.compiled
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            cores=min(chains, 2),
            target_accept=target_accept,
            progress_bar=False,
            # several random terms (repeated measures): fixed effects and the participants'
            # intercepts are correlated a posteriori; a low-rank mass matrix follows that
            low_rank_modified_mass_matrix=bool(data.terms),
        )
        return SamplerRun(idata, "nutpie", compiled_now, time.perf_counter() - start)
    import pymc as pm

    model = build_model(data, **given, term_priors=term_priors)
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
