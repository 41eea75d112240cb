"""Plots where a picture beats a table."""

from __future__ import annotations

import numpy as np

from trialsim.report.style import GREY, REFERENCE, pyplot, save_figure

FIRST_SHOWN = 10


def wilson(p: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``p`` out of ``n`` (honest at p = 0 or 1 and small
    n, where p ± z·SE collapses to a point)."""
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return centre - half, centre + half


def running_power_plot(
    p_values: dict[str, np.ndarray],
    alpha: float,
    path,
    *,
    title: str = "",
    target: float | None = 0.8,
    analytic: float | None = None,
):
    """Cumulative power against replicates with a 95 % Monte Carlo band (Wilson), per analysis;
    the target power (dashed) and the analytic formula's power (dotted) as references."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in p_values.items():
        reject = np.nan_to_num(p, nan=1.0) < alpha
        n = np.arange(1, len(reject) + 1)
        power = np.cumsum(reject) / n
        start = min(FIRST_SHOWN, len(n)) - 1  # fewer trials say little; drawn from the 10th
        n, power = n[start:], power[start:]
        lo, hi = wilson(power, n)
        (line,) = ax.plot(n, power, label=f"{name}: {power[-1]:.2f} after {n[-1]:,}")
        ax.fill_between(n, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color=REFERENCE, lw=1, ls="--", label=f"target power {target:.0%}")
    if analytic is not None and np.isfinite(analytic):
        ax.axhline(analytic, color=GREY, lw=1.2, ls=":", label=f"analytic formula {analytic:.2f}")
    ax.fill_between([], [], [], color="grey", alpha=0.3, label="±1.96 Monte Carlo SE (Wilson)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylim(0, 1)
    ax.set_xlabel("replicate trials simulated (log scale)")
    ax.set_ylabel("estimated power")
    ax.set_title(title or "running power")
    ax.legend(loc="lower right")
    return save_figure(fig, path)
