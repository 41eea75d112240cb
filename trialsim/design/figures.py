"""Figures for design comparisons, sweeps and budgets (PNG, written atomically).

Intervals are ±1.96 Monte Carlo SEs: the uncertainty due to the finite number of simulated
trials, not a confidence interval for the trial's effect.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from trialsim.report.style import BLUE, RED, REFERENCE, SKY, key_label, pyplot, save_figure

Z = 1.96
MAX_LINES = 8  # more lines than this on one plot stop being readable
MAX_PANELS = 6


def _plt():
    return pyplot()


def compare_figure(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Dot-and-interval chart of power, type-I error and bias per design (one row each).

    Reference lines: 80 % power, the nominal alpha, zero bias.
    """
    plt = _plt()
    rows = [r for r in rows if r.get("power") is not None and not _nan(r.get("power"))]
    labels = [f"{r['design']}\n({r['analysis']})" for r in rows]
    y = np.arange(len(rows))[::-1]
    alpha = rows[0].get("alpha", 0.05) if rows else 0.05
    panels = (
        ("power", "power_mcse", "power (dashed: 80 % target)", 0.8, (0, 1)),
        ("type1", "type1_mcse", "type-I error (dashed: nominal)", alpha, (0, None)),
        ("bias", "bias_mcse", "bias, outcome units (dashed: none)", 0.0, (None, None)),
    )
    months = "months_to_full_enrolment_median"
    with_recruitment = any(r.get(months) is not None for r in rows)
    if with_recruitment:
        panels += (
            (
                "months_to_full_enrolment",
                None,
                "months to full enrolment (p10-p90)",
                None,
                (0, None),
            ),
        )
    n_cols = 2  # two panels across an A4 page, as many rows as needed
    n_rows = -(-len(panels) // n_cols)
    fig, grid = plt.subplots(
        n_rows,
        n_cols,
        figsize=(7.2, n_rows * (0.42 * max(len(rows), 2) + 1.2)),
        sharey=True,
        squeeze=False,
    )
    axes = list(grid.flat)
    for spare in axes[len(panels) :]:
        spare.axis("off")
    for ax, (key, err, label, ref, lim) in zip(axes, panels, strict=False):
        if err is None:  # a median with its 10th-90th percentile range
            x = np.array([_num(r.get(f"{key}_median")) for r in rows])
            e = np.abs(
                np.array(
                    [
                        [_num(r.get(f"{key}_p10")) for r in rows],
                        [_num(r.get(f"{key}_p90")) for r in rows],
                    ]
                )
                - x
            )
        else:
            x = np.array([r[key] for r in rows], dtype=float)
            e = Z * np.array([r[err] for r in rows], dtype=float)
        ax.errorbar(x, y, xerr=e, fmt="o", color=BLUE, ecolor=SKY, capsize=4)
        if ref is not None:
            ax.axvline(ref, color=REFERENCE, lw=1, ls="--")
        ax.set_xlabel(label)
        if lim[0] is not None or lim[1] is not None:
            ax.set_xlim(left=lim[0], right=lim[1])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels)
    for ax in axes[: len(panels)]:
        ax.tick_params(labelleft=True)
    fig.suptitle(title or "designs compared (dots: estimate; bars: ±1.96 Monte Carlo SE)")
    fig.tight_layout()
    return save_figure(fig, path)


def budget_figure(curve: pd.DataFrame, best: dict, path: str | Path, *, title: str = "") -> Path:
    """Power of the best affordable design for each group size, the optimum marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(curve["group_size"], curve["power"], "o-", color=BLUE, label="analytic power")
    for r in curve.itertuples():
        ax.annotate(
            f"{r.n_groups}",
            (r.group_size, r.power),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    ax.plot([best["group_size"]], [best["power"]], "*", ms=16, color=RED, label="optimum")
    ax.axhline(0.8, color=REFERENCE, lw=1, ls="--", label="80 % target")
    ax.set_xlabel("participants per group (numbers: groups affordable)")
    ax.set_ylabel("analytic power")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(title or "best use of the budget")
    fig.tight_layout()
    return save_figure(fig, path)


def sweep_figures(table: pd.DataFrame, axes: list, out: str | Path) -> list[Path]:
    """Power curves along each numeric axis and power heatmaps over the first two axes."""
    out = Path(out)
    ok = table[table["error"].isna()] if "error" in table else table
    if ok.empty:
        return []
    keys = [a.key for a in axes]
    paths = []
    for axis in axes:
        if axis.numeric and len(axis.values) > 1:
            paths.append(_power_curve(ok, axis.key, [k for k in keys if k != axis.key], out))
    if len(axes) >= 2:
        paths += _heatmaps(ok, keys[0], keys[1], keys[2:], out)
    return paths


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def _power_curve(table: pd.DataFrame, x: str, others: list[str], out: Path) -> Path:
    """Power against one swept key: a line per combination of the other keys and analysis,
    a ±1.96 MCSE band around each, the analytic formula dotted, the 80 % target dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    by = [*others, "analysis"]
    groups = list(table.groupby(by, sort=False, dropna=False))
    several = table["analysis"].nunique() > 1
    analytic_shown = False
    for label, part in groups[:MAX_LINES]:
        part = part.sort_values(x)
        label = label if isinstance(label, tuple) else (label,)
        name = ", ".join(
            f"{key_label(k)} = {v:g}" if isinstance(v, int | float) else f"{key_label(k)} = {v}"
            for k, v in zip(by, label, strict=True)
            if k != "analysis"
        )
        if not name or several:
            name = f"{name}, {label[-1]} analysis" if name else f"{label[-1]} analysis"
        (line,) = ax.plot(part[x], part["power"], marker="o", ms=4, label=name)
        band = Z * part["power_mcse"]
        ax.fill_between(
            part[x],
            part["power"] - band,
            part["power"] + band,
            color=line.get_color(),
            alpha=0.18,
            linewidth=0,
        )
        if "analytic_power" in part and part["analytic_power"].notna().any():
            ax.plot(part[x], part["analytic_power"], ls=":", color=line.get_color(), lw=1.5)
            analytic_shown = True
    ax.axhline(0.8, color=REFERENCE, lw=1, ls="--", label="80 % target")
    if analytic_shown:
        ax.plot([], [], ls=":", color="black", label="analytic formula")
    ax.fill_between([], [], [], color="grey", alpha=0.25, label="±1.96 Monte Carlo SE")
    ax.set_ylim(0, 1)
    ax.set_xlabel(key_label(x))
    ax.set_ylabel("power")
    title = f"power against {key_label(x)}"
    if len(groups) > MAX_LINES:
        title += f" (first {MAX_LINES} of {len(groups)} lines)"
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, out / f"power-curve-{_slug(x)}.png")


def _heatmaps(table: pd.DataFrame, row: str, col: str, rest: list[str], out: Path) -> list[Path]:
    """Per analysis: power (left) and type-I error (right) over two swept keys, each cell
    written as estimate ± one Monte Carlo SE."""
    from matplotlib.colors import Normalize, TwoSlopeNorm

    plt = _plt()
    paths = []
    rest_values = [list(dict.fromkeys(table[k])) for k in rest]
    combos = list(itertools.product(*rest_values))[:MAX_PANELS]
    for analysis in dict.fromkeys(table["analysis"]):
        for combo in combos:
            part = table[table["analysis"] == analysis]
            for k, v in zip(rest, combo, strict=True):
                part = part[part[k] == v]
            panels = [("power", "power", (0, 1), "viridis", None)]
            if "type1" in part and part["type1"].notna().any():
                alpha = float(part["alpha"].iloc[0]) if "alpha" in part else 0.05
                top = max(3 * alpha, float(part["type1"].max()))
                # white at the nominal alpha, red above (anti-conservative), blue below
                panels.append(
                    ("type1", f"type-I error (white: nominal {alpha:g})", (0, top), "RdBu_r", alpha)
                )
            first = part.pivot_table(index=row, columns=col, values="power", sort=False)
            w = 0.7 * first.shape[1] + 1.7
            fig, axes = plt.subplots(
                1,
                len(panels),
                figsize=(w * len(panels), 0.6 * first.shape[0] + 2.2),
                squeeze=False,
            )
            for ax, (value, label, (vmin, vmax), cmap, centre) in zip(axes[0], panels, strict=True):
                grid = part.pivot_table(index=row, columns=col, values=value, sort=False)
                se = part.pivot_table(index=row, columns=col, values=f"{value}_mcse", sort=False)
                values = grid.to_numpy(float)
                if centre is None:
                    norm = Normalize(vmin, vmax)
                else:
                    norm = TwoSlopeNorm(vcenter=centre, vmin=vmin, vmax=vmax)
                image = ax.imshow(values, norm=norm, cmap=cmap, aspect="auto")
                ax.grid(False)
                for (i, j), v in np.ndenumerate(values):
                    if math.isnan(v):
                        continue
                    s = se.to_numpy(float)[i, j] if se.shape == grid.shape else float("nan")
                    text = f"{v:.2f}" + ("" if math.isnan(s) else f"\n±{s:.2f}")
                    shade = float(norm(v))
                    dark = shade < 0.6 if centre is None else abs(shade - 0.5) > 0.35
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
                ax.set_xticks(
                    range(grid.shape[1]),
                    [f"{c:g}" if isinstance(c, float) else str(c) for c in grid.columns],
                )
                ax.set_yticks(
                    range(grid.shape[0]),
                    [f"{r:g}" if isinstance(r, float) else str(r) for r in grid.index],
                )
                ax.set_xlabel(key_label(col))
                ax.set_ylabel(key_label(row))
                ax.set_title(f"{label.split(' (')[0]} (± one MCSE)")
                fig.colorbar(image, ax=ax, label=label, shrink=0.85)
            suffix = "".join(
                f"-{_slug(k)}={_slug(str(v))}" for k, v in zip(rest, combo, strict=True)
            )
            where = ", ".join(f"{key_label(k)} {v}" for k, v in zip(rest, combo, strict=True))
            fig.suptitle(f"{analysis} analysis" + (f" ({where})" if where else ""))
            fig.tight_layout()
            paths.append(save_figure(fig, out / f"heatmap-{_slug(analysis)}{suffix}.png"))
    return paths


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
