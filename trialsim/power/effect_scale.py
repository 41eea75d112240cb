"""What effect a binary or count power is for, in words: the ratio and each arm's risk or
rate (printed under every analytic power of such an outcome)."""

from __future__ import annotations

from trialsim.power.analytic_glm import treated_mean


def effect_line(formula: str, params: dict) -> str:
    """E.g. ``marginal odds ratio 1.19 (risk 8.0 % control, 9.4 % treated; test of the log
    odds ratio)`` for the keyword arguments ``params`` of a binary or count formula."""
    if "odds_ratio" in params:
        ratio, control = params["odds_ratio"], params["risk_control"]
        treated = float(treated_mean("binary", control, ratio))
        arms = f"risk {control:.1%} control, {treated:.1%} treated"
        name, test = "odds ratio", "log odds ratio"
    else:
        ratio, control = params["rate_ratio"], params["rate_control"]
        treated = float(treated_mean("count", control, ratio))
        arms = f"mean {control:.3g} control, {treated:.3g} treated"
        name, test = "rate ratio", "log rate ratio"
    if params.get("scale") == "difference":
        test = "risk difference" if "odds_ratio" in params else "rate difference"
    return f"marginal {name} {ratio:.3g} ({arms}; test of the {test})"
