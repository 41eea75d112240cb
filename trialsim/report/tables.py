"""Plain-text tables for the terminal."""

from __future__ import annotations

import math


def _pm(value: float, mcse: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if mcse is None or math.isnan(mcse):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {mcse:.{digits}f}"


def power_table(result: dict) -> str:
    """The `trialsim power` result as a readable table (± is one Monte Carlo SE)."""
    lines = [f"{result['scenario']}: outcome {result['outcome']}, alpha {result['alpha']}"]
    analytic = result.get("analytic")
    if analytic:
        if "error" in analytic:
            lines.append(f"analytic: {analytic['error']}")
        else:
            lines.append(
                f"analytic ({analytic['formula']}): power {analytic['power']:.3f} for an ITT "
                f"effect of {analytic['effect']:.3g} (SD {analytic['sd']:.3g}, ICC "
                f"{analytic['icc']:.3f}, completion {1 - analytic['dropout']:.0%})"
            )
    if "solve" in result:
        sol = result["solve"]
        lines.append(f"solve: {sol['solve']} = {sol['value']:.4g} for power {sol['target_power']}")
    if result["analyses"]:
        head = f"{'analysis':<16}{'power':>16}{'type I':>16}{'bias':>16}{'coverage':>16}{'fail':>6}"
        lines += ["", head, "-" * len(head)]
        for a in result["analyses"]:
            lines.append(
                f"{a['analysis']:<16}{_pm(a['power'], a['power_mcse']):>16}"
                f"{_pm(a['type1'], a['type1_mcse']):>16}{_pm(a['bias'], a['bias_mcse'], 2):>16}"
                f"{_pm(a['coverage'], a['coverage_mcse']):>16}{a['failures']:>6}"
            )
        reps = result["analyses"][0]["reps"]
        lines.append(
            f"({reps} replicates; ± one Monte Carlo SE; truth = ITT effect "
            f"{result['analyses'][0]['truth']:.3g})"
        )
    return "\n".join(lines)
