"""Figures of Bayesian results: prior/likelihood/posterior, posterior against the MCID, trace.

Figures are written atomically (:func:`trialsim.files.save_figure`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

from trialsim.files import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reanalysis(result, path: str | Path, *, title: str = "") -> Path:
    """Prior, likelihood and posterior densities of a :class:`Reanalysis` (analysis scale)."""
    plt = _pyplot()
    sds = [result.se, result.posterior_sd] + ([] if result.prior.flat else [result.prior.sd])
    centres = [result.estimate, result.posterior_mean, result.mcid, 0.0]
    if not result.prior.flat:
        centres.append(result.prior.mean)
    lo = min(centres) - 3.5 * max(sds)
    hi = max(centres) + 3.5 * max(sds)
    x = np.linspace(lo, hi, 600)
    fig, ax = plt.subplots(figsize=(7, 4))
    if not result.prior.flat:
        ax.plot(x, stats.norm.pdf(x, result.prior.mean, result.prior.sd), "--", label="prior")
    ax.plot(x, stats.norm.pdf(x, result.estimate, result.se), ":", label="likelihood")
    ax.plot(x, stats.norm.pdf(x, result.posterior_mean, result.posterior_sd), label="posterior")
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.axvline(result.mcid, color="firebrick", lw=0.8, label="MCID")
    ax.set_xlabel("effect (log scale)" if result.scale == "log" else "effect")
    ax.set_ylabel("density")
    ax.set_title(title or f"{result.prior.describe()}; P(benefit) = {result.p_benefit:.3f}")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_posterior_mcid(draws: np.ndarray, mcid: float | None, path, *, rope=None, title=""):
    """Histogram of posterior effect draws with zero, the MCID and the ROPE marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(np.ravel(draws), bins=60, density=True, color="steelblue", alpha=0.7)
    ax.axvline(0.0, color="grey", lw=0.8)
    if mcid is not None:
        ax.axvline(mcid, color="firebrick", lw=1.0, label=f"MCID = {mcid:g}")
    if rope is not None:
        ax.axvspan(rope[0], rope[1], color="orange", alpha=0.2, label="ROPE")
    ax.set_xlabel("treatment effect")
    ax.set_ylabel("posterior density")
    ax.set_title(title or "posterior of the effect")
    if mcid is not None or rope is not None:
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_prior_posterior(draws: np.ndarray, prior, path, *, title: str = "") -> Path:
    """Posterior draws of the effect against its (normal or flat) prior density."""
    plt = _pyplot()
    draws = np.ravel(draws)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(draws, bins=60, density=True, alpha=0.7, label="posterior")
    lo, hi = np.quantile(draws, [0.0005, 0.9995])
    if not prior.flat:
        lo, hi = min(lo, prior.mean - 3 * prior.sd), max(hi, prior.mean + 3 * prior.sd)
        x = np.linspace(lo, hi, 400)
        ax.plot(x, stats.norm.pdf(x, prior.mean, prior.sd), "--", label="prior")
    ax.set_xlabel("treatment effect")
    ax.set_title(title or prior.describe())
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_trace(idata, var_names, path) -> Path:
    """ArviZ trace plot of the named variables."""
    import arviz as az

    _pyplot()
    axes = az.plot_trace(idata, var_names=list(var_names), compact=True)
    return save_figure(axes.ravel()[0].figure, path)
