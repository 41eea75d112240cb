"""Plots where a picture beats a table."""

from __future__ import annotations

import numpy as np

from trialsim.report.style import GREY, REFERENCE, pyplot, save_figure


def running_power_plot(
    p_values: dict[str, np.ndarray],
    alpha: float,
    path,
    *,
    title: str = "",
    target: float | None = 0.8,
    analytic: float | None = None,
):
    """Cumulative power against replicates with a ±1.96 Monte Carlo SE band, per analysis;
    the target power (dashed) and the analytic formula's power (dotted) as references."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in p_values.items():
        reject = np.nan_to_num(p, nan=1.0) < alpha
        n = np.arange(1, len(reject) + 1)
        power = np.cumsum(reject) / n
        band = 1.96 * np.sqrt(np.maximum(power * (1 - power), 1e-12) / n)
        (line,) = ax.plot(n, power, label=f"{name}: {power[-1]:.2f} after {n[-1]:,}")
        ax.fill_between(
            n, power - band, power + band, color=line.get_color(), alpha=0.2, linewidth=0
        )
    if target is not None:
        ax.axhline(target, color=REFERENCE, lw=1, ls="--", label=f"target power {target:.0%}")
    if analytic is not None and np.isfinite(analytic):
        ax.axhline(analytic, color=GREY, lw=1.2, ls=":", label=f"analytic formula {analytic:.2f}")
    ax.fill_between([], [], [], color="grey", alpha=0.3, label="±1.96 Monte Carlo SE")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("replicate trials simulated (log scale)")
    ax.set_ylabel("estimated power")
    ax.set_title(title or "running power")
    ax.legend(loc="lower right")
    return save_figure(fig, path)
