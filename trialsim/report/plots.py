"""Plots where a picture beats a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def running_power_plot(p_values: dict[str, np.ndarray], alpha: float, path, *, title: str = ""):
    """Cumulative power against replicates with a ±2 Monte Carlo SE band, per analysis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in p_values.items():
        reject = np.nan_to_num(p, nan=1.0) < alpha
        n = np.arange(1, len(reject) + 1)
        power = np.cumsum(reject) / n
        band = 2 * np.sqrt(np.maximum(power * (1 - power), 1e-12) / n)
        (line,) = ax.plot(n, power, label=name)
        ax.fill_between(n, power - band, power + band, color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("replicate trials")
    ax.set_ylabel("estimated power (±2 MCSE)")
    ax.set_title(title or "running power")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
