"""Figures of Bayesian results: the posterior against the MCID, prior and posterior, trace,
and the reanalysis of a published result.

The MCID is drawn where the console puts it: signed by the direction of benefit (an MCID of 5
on an outcome where lower is better is the line at −5, labelled "MCID (−5)"). Densities are
smooth (Gaussian kernel, Scott's bandwidth) with the 95 % highest-density interval shaded and
the probability beyond the MCID written in the legend. All figures use
:mod:`trialsim.report.style` and are written atomically as PNG, SVG or PDF by suffix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

from trialsim.report.style import (
    BLUE,
    CYCLE,
    GREY,
    HEIGHT_IN,
    MCID_COLOUR,
    ORANGE,
    REFERENCE,
    WIDTH_IN,
    pyplot,
    save_figure,
    signed,
)

EFFECT_LABEL = "treatment effect (outcome units)"


def hdi(draws: np.ndarray, prob: float = 0.95) -> tuple[float, float]:
    """Shortest interval holding ``prob`` of the draws (the highest-density interval of a
    unimodal posterior)."""
    x = np.sort(np.ravel(draws))
    n = len(x)
    step = int(np.floor(prob * n))  # as ArviZ's hdi, so figure and summary table agree
    if step >= n:
        return float(x[0]), float(x[-1])
    widths = x[step:] - x[: n - step]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + step])


def kde_curve(
    draws: np.ndarray, n: int = 512, *, lower: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth density of the draws on a grid spanning them plus three bandwidths; with a
    ``lower`` bound (e.g. 0 for an SD) the kernel is reflected there so no mass leaks below."""
    x = np.ravel(draws).astype(float)
    kde = stats.gaussian_kde(x)
    bw = float(np.sqrt(kde.covariance[0, 0]))
    lo = x.min() - 3 * bw if lower is None else lower
    grid = np.linspace(lo, x.max() + 3 * bw, n)
    dens = kde(grid)
    if lower is not None:
        dens = dens + kde(2 * lower - grid)
    return grid, dens


def _beyond(grid: np.ndarray, mcid: float, better: str) -> np.ndarray:
    return grid >= mcid if better == "higher" else grid <= mcid


def plot_posterior_mcid(
    draws: np.ndarray,
    mcid: float | None,
    path,
    *,
    rope=None,
    title: str = "",
    better: str | None = None,
    xlabel: str = EFFECT_LABEL,
    hdi_prob: float = 0.95,
):
    """Posterior density of the effect with its HDI shaded, the area beyond the MCID shaded
    and its probability in the legend; zero, the MCID and the ROPE marked.

    ``mcid`` is signed (negative when lower is better); ``better`` defaults to the MCID's sign.
    """
    plt = pyplot()
    draws = np.ravel(draws)
    grid, dens = kde_curve(draws)
    lo, hi = hdi(draws, hdi_prob)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
    ax.plot(grid, dens, color=BLUE, label="posterior density")
    inside = (grid >= lo) & (grid <= hi)
    ax.fill_between(
        grid,
        0,
        dens,
        where=inside,
        color=BLUE,
        alpha=0.18,
        linewidth=0,
        label=f"{hdi_prob:.0%} HDI {signed(lo, '.3g')} to {signed(hi, '.3g')}",
    )
    top = 1.1 * float(dens.max())  # reference lines stop below the legend's headroom
    ax.plot([0.0, 0.0], [0, top], color=REFERENCE, lw=0.9, ls="--", label="no effect (0)")
    if mcid is not None:
        better = better or ("lower" if mcid < 0 else "higher")
        p = float(np.mean(draws >= mcid if better == "higher" else draws <= mcid))
        ax.fill_between(
            grid,
            0,
            dens,
            where=_beyond(grid, mcid, better),
            color=MCID_COLOUR,
            alpha=0.35,
            linewidth=0,
            label=f"P(beyond MCID) = {p:.2f}",
        )
        ax.plot([mcid, mcid], [0, top], color=MCID_COLOUR, lw=1.2, label=f"MCID ({signed(mcid)})")
    if rope is not None:
        ax.fill_between(rope, 0, top, color=ORANGE, alpha=0.15, linewidth=0, label="ROPE")
    ax.set_ylim(0, 1.45 * float(dens.max()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("posterior density")
    ax.set_title(title or "posterior of the treatment effect")
    ax.legend(loc="upper center", ncol=2)
    return save_figure(fig, path)


def plot_prior_posterior(
    draws: np.ndarray, prior, path, *, title: str = "", xlabel: str = EFFECT_LABEL
) -> Path:
    """Posterior density of the effect against its (normal or flat) prior density."""
    plt = pyplot()
    draws = np.ravel(draws)
    grid, dens = kde_curve(draws)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
    ax.plot(grid, dens, color=BLUE, label="posterior")
    ax.fill_between(grid, 0, dens, color=BLUE, alpha=0.15, linewidth=0)
    if not prior.flat:
        lo = min(grid[0], prior.mean - 3 * prior.sd)
        hi = max(grid[-1], prior.mean + 3 * prior.sd)
        x = np.linspace(lo, hi, 400)
        ax.plot(x, stats.norm.pdf(x, prior.mean, prior.sd), "--", color=GREY, label="prior")
    else:
        ax.plot([], [], "--", color=GREY, label="prior: flat")
    ax.axvline(0.0, color=REFERENCE, lw=0.9, ls=":", label="no effect (0)")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title or f"prior {prior.describe()}")
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def plot_trace(idata, var_names, path) -> Path:
    """Per variable: the density of each chain (left) and the draws in order (right)."""
    plt = pyplot()
    names = list(var_names)
    fig, axes = plt.subplots(
        len(names), 2, figsize=(WIDTH_IN, 1.9 * len(names) + 0.4), squeeze=False
    )
    for row, name in enumerate(names):
        values = np.asarray(idata.posterior[name].values)
        values = values.reshape(values.shape[0], values.shape[1], -1)[..., 0]  # (chain, draw)
        # SDs whose draws reach down to 0: reflect the kernel there
        near_zero = values.min() >= 0 and values.min() < 0.05 * values.max()
        lower = 0.0 if name != "effect" and near_zero else None
        for c, chain in enumerate(values):
            colour = CYCLE[c % len(CYCLE)]
            grid, dens = kde_curve(chain, n=256, lower=lower)
            axes[row, 0].plot(grid, dens, color=colour, lw=1, label=f"chain {c + 1}")
            axes[row, 1].plot(np.arange(len(chain)), chain, color=colour, lw=0.4, alpha=0.8)
        axes[row, 0].set_ylabel(name)
        axes[row, 0].set_ylim(bottom=0)
        axes[row, 1].set_ylabel(name)
    axes[0, 0].set_title("density per chain")
    axes[0, 1].set_title("draws per chain")
    axes[-1, 0].set_xlabel("value")
    axes[-1, 1].set_xlabel("draw")
    if len(values) > 1:
        axes[0, 0].legend(loc="upper right")
    fig.tight_layout(h_pad=1.2)
    return save_figure(fig, path)


RATIO_TICKS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def plot_reanalysis(result, path: str | Path, *, title: str = "") -> Path:
    """Prior, likelihood and posterior of a :class:`Reanalysis`; ratio scales (``log``) are
    drawn on a ratio axis with ticks 0.5, 0.75, 1, 1.5, 2 (the densities are those of the log
    ratio), other scales on the outcome's own axis. The area beyond the MCID is shaded."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    plt = pyplot()
    ratio = result.scale == "log"
    sds = [result.se, result.posterior_sd] + ([] if result.prior.flat else [result.prior.sd])
    centres = [result.estimate, result.posterior_mean, result.mcid, 0.0]
    if not result.prior.flat:
        centres.append(result.prior.mean)
    lo = min(centres) - 3.5 * max(sds)
    hi = max(centres) + 3.5 * max(sds)
    x = np.linspace(lo, hi, 600)
    shown = np.exp(x) if ratio else x
    fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
    if not result.prior.flat:
        ax.plot(
            shown,
            stats.norm.pdf(x, result.prior.mean, result.prior.sd),
            "--",
            color=GREY,
            label="prior",
        )
    ax.plot(
        shown,
        stats.norm.pdf(x, result.estimate, result.se),
        ":",
        color=ORANGE,
        label="likelihood (published result)",
    )
    post = stats.norm.pdf(x, result.posterior_mean, result.posterior_sd)
    ax.plot(shown, post, color=BLUE, label="posterior")
    beyond = _beyond(x, result.mcid, result.better)
    ax.fill_between(
        shown,
        0,
        post,
        where=beyond,
        color=MCID_COLOUR,
        alpha=0.3,
        linewidth=0,
        label=f"P(beyond MCID) = {result.p_beyond_mcid:.2f}",
    )
    null = 1.0 if ratio else 0.0
    mcid_shown = float(np.exp(result.mcid)) if ratio else result.mcid
    ax.axvline(null, color=REFERENCE, lw=0.9, ls="--", label=f"no effect ({null:g})")
    ax.axvline(mcid_shown, color=MCID_COLOUR, lw=1.2, label=f"MCID ({signed(mcid_shown, '.3g')})")
    if ratio:
        ax.set_xscale("log")
        ticks = [t for t in RATIO_TICKS if shown[0] <= t <= shown[-1]]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("ratio (treatment / control; 1 = no effect)")
    else:
        ax.set_xlabel(EFFECT_LABEL)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("density" + (" of the log ratio" if ratio else ""))
    ax.set_title(title or f"{result.prior.describe()}; P(benefit) = {result.p_benefit:.3f}")
    ax.legend(loc="best")
    return save_figure(fig, path)
