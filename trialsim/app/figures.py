"""The planner's own figures (the power curve, the exact posterior); the recruitment
timeline and the design comparison are the library's figures."""

from __future__ import annotations

import io

import numpy as np

_MEANING = {
    "n_groups": "treatment groups",
    "n_clusters": "clusters in the treated arm",
    "clusters_per_step": "clusters crossing over per step",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def power_curve_figure(curve: dict, solved: float | None = None):
    """Analytic power against the count, the target power (dashed) and the scenario's count."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    ax.plot(curve["x"], curve["power"], color="#1f77b4", marker="o", markersize=3)
    ax.axhline(curve["target_power"], color="#d62728", linestyle="--", linewidth=1,
               label=f"target {curve['target_power']:.0%}")  # fmt: skip
    ax.axvline(curve["now"], color="grey", linestyle=":", linewidth=1,
               label=f"scenario: {curve['now']}")  # fmt: skip
    if solved is not None and np.isfinite(solved):
        ax.axvline(solved, color="#2ca02c", linestyle="--", linewidth=1,
                   label=f"needed: {solved:g}")  # fmt: skip
    ax.set_xlabel(_MEANING.get(curve["unknown"], curve["unknown"]))
    ax.set_ylabel("power")
    ax.set_title(f"analytic power ({curve['formula']} formula), allocation held", fontsize=9)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def posterior_figure(post, *, mcid: float | None, better: str, title: str = ""):
    """The exact marginal posterior density of the effect (a mixture of normals) with zero
    and the MCID in the direction of benefit."""
    from scipy import stats

    plt = _pyplot()
    w, m, s = post.weights[0], post.means[0], post.sds[0]
    low, high = post.interval(0.999)
    lo, hi = float(low[0]), float(high[0])
    lo, hi = lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)
    if mcid is not None:
        signed = mcid if better == "higher" else -mcid
        lo, hi = min(lo, signed - abs(signed) * 0.2), max(hi, signed + abs(signed) * 0.2)
    x = np.linspace(lo, hi, 400)
    dens = (w[:, None] * stats.norm.pdf(x[None, :], m[:, None], s[:, None])).sum(axis=0)
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100, layout="constrained")
    ax.plot(x, dens, color="#1f77b4")
    ax.fill_between(x, dens, alpha=0.2, color="#1f77b4")
    ax.axvline(0, color="grey", linewidth=1, label="no effect")
    if mcid is not None:
        ax.axvline(signed, color="#d62728", linestyle="--", linewidth=1, label=f"MCID {signed:g}")
    ax.set_xlabel("effect (outcome units)")
    ax.set_ylabel("posterior density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def to_bytes(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    _pyplot().close(fig)
    return buf.getvalue()
