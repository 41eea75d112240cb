"""One look for every trialsim figure: fonts, sizes, colours, and how figures are written.

Every figure module asks :func:`pyplot` for matplotlib (headless, with the house style applied)
and writes with :func:`save_figure`: PNG at :data:`DPI` dots per inch, or SVG/PDF (vector)
when the path ends so. Colours are chosen to stay distinct in grey scale and for the common
colour-vision deficiencies (Okabe-Ito).
"""

from __future__ import annotations

import io
from pathlib import Path

DPI = 150
WIDTH_IN = 7.0  # one figure across an A4 text column (about 16 cm) at full size
HEIGHT_IN = 4.0

# Okabe-Ito palette
BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
RED = "#D55E00"
PURPLE = "#CC79A7"
SKY = "#56B4E9"
YELLOW = "#F0E442"
GREY = "#7f7f7f"
CYCLE = (BLUE, ORANGE, GREEN, RED, PURPLE, SKY, "#000000", YELLOW)

REFERENCE = "#444444"  # reference lines: target power, nominal alpha, null effect
MCID_COLOUR = RED
MINUS = "\u2212"  # a real minus sign in labels ("MCID (−5)")

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "svg.fonttype": "none",  # text stays text in SVG (searchable, editable)
    "pdf.fonttype": 42,  # TrueType fonts in PDF (editable in Illustrator/Inkscape)
}


def pyplot():
    """matplotlib.pyplot on the headless Agg backend with the house style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    matplotlib.rcParams.update(RC)
    matplotlib.rcParams["axes.prop_cycle"] = cycler(color=list(CYCLE))
    return plt


def signed(value: float, digits: str = "g") -> str:
    """``value`` formatted with a typographic minus sign (−5, not -5)."""
    return format(value, digits).replace("-", MINUS)


def save_figure(fig, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write ``fig`` atomically and close it: PNG at ``dpi``, SVG or PDF by the path's suffix.

    Nothing is left half-written if drawing fails; a bad suffix is a ValueError naming the
    formats trialsim writes.
    """
    from trialsim.files import check_figure_path, write_bytes

    plt = pyplot()
    path = check_figure_path(path)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=path.suffix.lower().lstrip("."), dpi=dpi)
    finally:
        plt.close(fig)
    return write_bytes(path, buffer.getvalue())


# human labels (with units) for scenario keys that sweeps vary; other keys fall back to their
# last part with spaces
KEY_LABELS = {
    "groups.icc_group": "group ICC",
    "groups.icc_trainer": "trainer ICC",
    "groups.icc_municipality": "municipality ICC",
    "groups.mean_size": "mean group size (participants)",
    "groups.cv_size": "CV of group size",
    "groups.min_size": "smallest group (participants)",
    "groups.max_size": "largest group (participants)",
    "groups.groups_per_trainer": "groups per trainer",
    "design.sessions_offered": "sessions offered",
    "design.allocation_treated": "share allocated to treatment",
    "design.contamination": "contamination (share of effect)",
    "design.n_steps": "steps (stepped wedge)",
    "attendance.mean_fraction": "mean share of sessions attended",
    "dropout.completion_target": "share completing the last visit",
    "sites.n_municipalities": "municipalities",
    "n_groups": "treatment groups",
    "group_size": "participants per group",
}


def key_label(key: str) -> str:
    """A label for people for a scenario key (``groups.icc_group`` -> ``group ICC``)."""
    if key in KEY_LABELS:
        return KEY_LABELS[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "outcomes":
        field = {"effect": "effect", "sd": "SD", "mean": "mean", "mcid": "MCID"}.get(parts[2])
        if field:
            return f"{parts[1].upper()} {field} (outcome units)"
    return parts[-1].replace("_", " ")


def effect_label(outcome: str | None, spec=None) -> str:
    """Axis label for a treatment effect on ``outcome``: a difference in points for bounded
    scales, a log odds/rate ratio for binary/count outcomes (``spec`` an OutcomeSpec or a
    scenario outcome; optional)."""
    if not outcome:
        return "treatment effect (outcome units)"
    name = outcome.upper() if len(outcome) <= 5 else outcome
    kind = getattr(spec, "type", None)
    if kind == "binary":
        return f"log odds ratio, {name}"
    if kind == "count":
        return f"log rate ratio, {name}"
    lower, upper = getattr(spec, "lower", None), getattr(spec, "upper", None)
    if lower is not None and upper is not None:
        return f"difference in {name} (points, {lower:g}-{upper:g} scale)"
    return f"difference in {name} (outcome units)"
