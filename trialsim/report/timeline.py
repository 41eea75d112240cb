"""The recruitment timeline plot and the recruitment summary table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trialsim.files import check_figure_path
from trialsim.report.style import BLUE, GREEN, ORANGE, RED, pyplot, save_figure
from trialsim.simulate.recruitment import ACTIVITIES, RecruitmentResult

_ARMS = (("control", BLUE), ("treatment", ORANGE))


def _band(ax, months, counts, color, label, *, style="-"):
    """Median line with a 10th-90th percentile band over replicates (counts (R, T)); returns
    a legend handle showing both (line over its band colour)."""
    lo, mid, hi = np.quantile(counts, [0.1, 0.5, 0.9], axis=0)
    band = ax.fill_between(months, lo, hi, color=color, alpha=0.2, linewidth=0, step="post")
    (line,) = ax.step(months, mid, where="post", color=color, linestyle=style, label=label)
    return (band, line), label


def timeline_plot(result: RecruitmentResult, path, *, title: str = "") -> Path:
    """Cumulative enrolment per municipality and arm, with group starts and cancellations.

    One panel for the whole trial and one per municipality; lines are medians over replicates,
    bands the 10th-90th percentiles. Written atomically (PNG, SVG or PDF by suffix).
    """
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    path = check_figure_path(path)
    months = result.months
    end = np.nanquantile(
        np.fmax(result.months_to_full_enrolment, result.months_to_last_group_start), 0.9
    )
    last = int(min(months[-1], np.ceil(end) + 3))
    months = months[: last + 1]
    enrolled = result.enrolled_by_month[..., : last + 1]  # (R, M, 2, T)
    starts = result.group_starts_by_month[..., : last + 1]
    cancels = result.group_cancels_by_month[..., : last + 1]
    names = ("all municipalities", *result.municipality_names)
    n_panels = len(names)
    n_cols = 3 if n_panels > 4 else n_panels
    n_rows = -(-n_panels // n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(2.6 * n_cols, 2.1 * n_rows + (0.3 if n_panels < n_rows * n_cols else 0.9)),
        sharex=True,
        squeeze=False,
    )
    handles = []
    for i, ax in enumerate(axes.flat):
        if i >= n_panels:
            ax.axis("off")
            continue
        sel = slice(None) if i == 0 else slice(i - 1, i)
        drawn = [
            _band(ax, months, enrolled[:, sel, a].sum(axis=1), color, f"people enrolled, {arm}")
            for a, (arm, color) in enumerate(_ARMS)
        ]
        ax2 = ax.twinx()
        drawn.append(
            _band(ax2, months, starts[:, sel].sum(axis=1), GREEN, "groups started", style="--")
        )
        drawn.append(
            _band(ax2, months, cancels[:, sel].sum(axis=1), RED, "groups cancelled", style=":")
        )
        if i == 0:
            handles = drawn
        ax2.set_ylim(bottom=0)
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.grid(False)
        ax2.spines["right"].set_visible(True)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelbottom=True)  # every panel keeps its month labels
        ax.set_title(names[i], fontsize=8)
        ax.tick_params(labelsize=7)
        ax2.tick_params(labelsize=7)
        if i % n_cols == 0:
            ax.set_ylabel("people enrolled", fontsize=8)
        if i % n_cols == n_cols - 1 or i == n_panels - 1:
            ax2.set_ylabel("groups", fontsize=8)
    for i, ax in enumerate(axes.flat):
        if i < n_panels and (i // n_cols == n_rows - 1 or i + n_cols >= n_panels):
            ax.set_xlabel(f"months from {result.start_date.isoformat()}", fontsize=8)
    fig.suptitle(
        title
        or (
            f"{result.scenario}, {result.design} randomisation: {result.n_reps:,} simulated "
            "recruitments"
        ),
        fontsize=10,
    )
    legend = {
        "handles": [h for h, _ in handles],
        "labels": [label for _, label in handles],
        "handler_map": {tuple: HandlerTuple(ndivide=1)},
        "title": "line: median; band: 10th-90th percentile",
        "title_fontsize": 7,
        "fontsize": 7,
    }
    if n_panels < axes.size:  # the legend fills the first unused panel
        axes.flat[n_panels].legend(loc="center", **legend)
        fig.tight_layout(h_pad=0.6, w_pad=0.4)
    else:
        fig.legend(loc="lower center", ncol=2, **legend)
        fig.tight_layout(rect=(0, 0.9 / (2.1 * n_rows + 0.9), 1, 1), h_pad=0.6, w_pad=0.4)
    return save_figure(fig, path)


_TABLE_ROWS = (
    ("months_to_full_enrolment", "months to full enrolment"),
    ("months_to_last_group_start", "months to last group start"),
    ("referrals", "referrals"),
    ("ineligible_at_screening", "  ineligible on the records"),
    ("invited", "invited to assessment"),
    ("ineligible_at_assessment", "  ineligible at the interview"),
    ("refused_consent", "  refused consent"),
    ("recruited", "recruited (enrolled)"),
    ("randomised", "randomised"),
    ("lost_before_start", "lost before start"),
    ("not_offered_group", "treated, last group cancelled"),
    ("started_treatment", "treated who started a group"),
    ("groups_started", "groups started"),
    ("groups_cancelled", "groups cancelled"),
    ("mean_group_size_at_start", "mean group size at start"),
    ("recruits_per_treated_group", "recruits per treated group"),
    ("mean_waiting_months", "mean wait for the group (months)"),
    ("staff_hours", "staff hours"),
)


def recruitment_table(summary: dict) -> str:
    """The `trialsim recruit` summary as a readable table (median, 10th, 90th percentile)."""

    def row(label, q):
        return f"{label:<34}{q['median']:>10.1f}{q['p10']:>10.1f}{q['p90']:>10.1f}"

    head = f"{'':<34}{'median':>10}{'p10':>10}{'p90':>10}"
    lines = [
        f"{summary['scenario']}: recruitment under {summary['design']} randomisation "
        f"({summary['reps']} replicates, month 0 = {summary['calendar']['start_date']})",
        "",
        head,
        "-" * len(head),
    ]
    lines += [row(label, summary[key]) for key, label in _TABLE_ROWS]
    lines += [row(f"  {a}", summary["staff_hours_by_activity"][a]) for a in ACTIVITIES]
    lines.append("sample measured at visit")
    lines += [
        row(f"  visit {v['visit']} (month {v['month']:g})", v) for v in summary["sample_at_visit"]
    ]
    cal = summary["calendar"]
    full = cal["full_enrolment_date"]
    lines += [
        "",
        f"full enrolment on {full['median']} (10-90 %: {full['p10']} to {full['p90']})",
    ]
    return "\n".join(lines)
