"""Plain-text tables for the terminal."""

from __future__ import annotations

import math


def _pm(value: float, mcse: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if mcse is None or math.isnan(mcse):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {mcse:.{digits}f}"


def _analytic_line(analytic: dict, label: str = "analytic") -> str:
    if "error" in analytic:
        return f"{label}: {analytic['error']}"
    icc = analytic.get("icc")
    icc_text = f", ICC {icc:.3f}" if icc is not None else ""
    if "effect_scale" in analytic:  # binary and count outcomes: a ratio and the arms' means
        between = f"ICC {icc:.3g}" if icc is not None else (
            f"between-group CV {analytic['cv_between']:.3g}"
        )  # fmt: skip
        return (
            f"{label} ({analytic['formula']}): power {analytic['power']:.3f} for a "
            f"{analytic['effect_scale']} ({between} on the outcome scale, completion "
            f"{1 - analytic['dropout']:.0%})"
        )
    return (
        f"{label} ({analytic['formula']}): power {analytic['power']:.3f} for an ITT effect of "
        f"{analytic['effect']:.3g} (SD {analytic['sd']:.3g}{icc_text}, completion "
        f"{1 - analytic['dropout']:.0%})"
    )


def _label(a: dict) -> str:
    """The analysis, and with three or more arms its contrast."""
    return f"{a['analysis']} {a['contrast']}" if "contrast" in a else a["analysis"]


def multi_arm_lines(summaries: list[dict], alpha: float) -> list[str]:
    """The decisions over the contrasts of each analysis (``trialsim power`` with 3+ arms):
    "any arm" / "all arms" significant and the family-wise error rate per adjustment, and how
    often the best arm is picked (± one Monte Carlo SE)."""
    what = {
        "none": "unadjusted",
        "holm": "Holm",
        "dunnett": "Dunnett",
    }
    lines = []
    for m in summaries:
        k = len(m["contrasts"])
        lines += [
            "",
            f"decisions over the {k} contrasts with {m['reference']} ({m['analysis']}, "
            f"alpha {alpha:g}):",
        ]
        head = f"{'adjustment':<14}{'any arm':>16}{'all arms':>16}{'FWER (no effect)':>20}"
        lines += [head, "-" * len(head)]
        for name, d in m["decisions"].items():
            lines.append(
                f"{what[name]:<14}{_pm(d['any_power'], d['any_power_mcse']):>16}"
                f"{_pm(d['all_power'], d['all_power_mcse']):>16}"
                f"{_pm(d['fwer'], d['fwer_mcse']):>20}"
            )
        if m["best_arm"] is not None:
            lines.append(
                f"best arm {m['best_arm']} has the best estimate in "
                f"{_pm(m['best_arm_selected'], m['best_arm_selected_mcse'])} of replicates"
            )
        lines.append(f"note: {m['dunnett_note']}")
    return lines


def _estimate_text(a: dict) -> str:
    """Mean estimate and truth, as a ratio on ratio scales (``OR 1.52 (1.50)``); the ratio
    of a log-scale analysis is exp of the mean log estimate (a geometric mean)."""
    est, truth, ratio = a.get("mean_estimate", math.nan), a["truth"], a.get("ratio")
    if ratio:
        return f"{ratio} {math.exp(est):.2f} ({math.exp(truth):.2f})"
    return f"{est:.3g} ({truth:.3g})"


def _truth_text(a: dict) -> str:
    """The truth on the analysis's scale, named, and as a ratio on ratio scales."""
    text = f"{a['truth']:.3g}"
    if a.get("ratio") and math.isfinite(a["truth"]):
        text += f" = {a['ratio']} {math.exp(a['truth']):.2f}"
    scale = a.get("scale")
    return f"{text} ({scale})" if scale else text


def power_table(result: dict) -> str:
    """The `trialsim power` result as a readable table (± is one Monte Carlo SE)."""
    outcomes = result.get("outcomes", [result["outcome"]])
    several = len(outcomes) > 1
    lines = [f"{result['scenario']}: outcome {', '.join(outcomes)}, alpha {result['alpha']}"]
    analytic = result.get("analytic")
    if analytic:
        if several:
            lines += [_analytic_line(a, f"analytic {name}") for name, a in analytic.items()]
        else:
            lines.append(_analytic_line(analytic))
    if "solve" in result:
        sol = result["solve"]
        lines.append(
            f"solve: {sol['solve']} = {sol['value']:.4g} for power {sol['target_power']} "
            f"({sol['meaning']})"
        )
    simulated = [a for a in result["analyses"] if a.get("method", "simulation") == "simulation"]
    if simulated:
        arms = any("contrast" in a for a in simulated)
        label = max((len(_label(a)) for a in simulated), default=0) + 2 if arms else 16
        head = (
            f"{'outcome':<14}{'analysis':<{label}}{'power':>16}{'type I':>16}{'bias':>16}"
            f"{'coverage':>16}{'fail':>6}  {'estimate (truth)'}"
        )
        lines += ["", head, "-" * len(head)]
        for a in simulated:
            lines.append(
                f"{a['outcome']:<14}{_label(a):<{label}}{_pm(a['power'], a['power_mcse']):>16}"
                f"{_pm(a['type1'], a['type1_mcse']):>16}{_pm(a['bias'], a['bias_mcse'], 2):>16}"
                f"{_pm(a['coverage'], a['coverage_mcse']):>16}{a['failures']:>6}  "
                f"{_estimate_text(a)}"
            )
        reps = simulated[0]["reps"]
        truths = ", ".join(_truth_text(a) for a in simulated)
        lines.append(f"({reps} replicates; ± one Monte Carlo SE; truth = {truths})")
    if "decisions" in result:
        lines.append("")
        chosen = result["decision"]["rule"]
        for rule in (chosen, *(r for r in result["decisions"] if r != chosen)):
            d = result["decisions"][rule]
            what = (
                "all outcomes significant (co-primary)"
                if rule == "all"
                else "at least one significant after Holm"
            )
            lines.append(
                f"decision '{rule}' ({what}): power {_pm(d['power'], d['power_mcse'])}, "
                f"type I {_pm(d['type1'], d['type1_mcse'])}, replicates with a failed fit "
                f"{d['failures']}"
            )
    return "\n".join(lines)
