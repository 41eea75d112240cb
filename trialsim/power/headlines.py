"""Honest headlines for simulated power: flag analyses the scenario biases, and observed power.

An analysis whose type-I error exceeds alpha by more than 3 Monte Carlo SEs does not test the
treatment effect alone: the scenario's bias sources (unblinded assessors who score treated
participants higher, expectancy bias of self-reports, informative dropout, contamination)
push its estimates. Its "power" is then a rejection rate, not the power to detect the true
effect. :func:`bias_flags` names the sources the scenario switches on for the outcome and
:func:`unbiased_scenario` switches them off, so the power at the true effect can be simulated
on the same random numbers.

A scenario written by ``trialsim calibrate`` takes its effect from the data it was fitted to;
power computed from it is observed (post hoc) power, a function of the p-value already seen
(Hoenig & Heisey 2001, Am Stat 55:19): :func:`observed_power_note` warns.
"""

from __future__ import annotations

from trialsim.scenario import BoundedOutcome, Scenario

#: Marker ``trialsim calibrate`` writes in the description of a calibrated scenario.
CALIBRATED_MARKER = "calibrated from data"

#: Type-I error above alpha by more than this many Monte Carlo SEs flags an analysis.
FLAG_MCSE = 3.0


def flagged(type1: float, type1_mcse: float, alpha: float) -> bool:
    """Type-I error above alpha by more than :data:`FLAG_MCSE` Monte Carlo SEs; the MCSE is
    the binomial SE at alpha if the observed one is 0 (no rejections)."""
    if type1 != type1:  # NaN
        return False
    return type1 - alpha > FLAG_MCSE * max(type1_mcse, 1e-12)


def biased(oc, alpha: float, sources: list[str]) -> bool:
    """An analysis (or one contrast of it) the scenario biases: its type-I error is above
    alpha by more than :data:`FLAG_MCSE` Monte Carlo SEs (:func:`flagged`), or the scenario
    switches on a bias source for the outcome (``sources``, :func:`bias_sources`) and the
    bias is beyond :data:`FLAG_MCSE` MCSEs of zero (a bias can leave the type-I error alone,
    e.g. contamination that only acts with an effect)."""
    if flagged(oc.type1, oc.type1_mcse, alpha):
        return True
    if not sources or oc.bias != oc.bias:
        return False
    return abs(oc.bias) > FLAG_MCSE * max(oc.bias_mcse, 1e-12)


def biased_headline(oc, outcome: str, alpha: float, sources: list[str], fair=None) -> dict:
    """The JSON entry of a biased analysis (see :func:`headline_lines`); ``fair``: its
    operating characteristics with the bias sources switched off (same random numbers)."""
    h = {
        "kind": "biased",
        "analysis": oc.analysis,
        "outcome": outcome,
        "alpha": alpha,
        "type1": oc.type1,
        "type1_mcse": oc.type1_mcse,
        "type1_flagged": flagged(oc.type1, oc.type1_mcse, alpha),
        "bias": oc.bias,
        "bias_mcse": oc.bias_mcse,
        "power": oc.power,
        "sources": sources,
    }
    if fair is not None:
        h["power_true_effect"] = fair.power
        h["power_true_effect_mcse"] = fair.power_mcse
    return h


def bias_sources(s: Scenario, outcome: str) -> list[str]:
    """The bias sources the scenario switches on for ``outcome``, in words."""
    o = s.outcomes[outcome]
    out = []
    rater = getattr(o, "rater", "register")
    if isinstance(o, BoundedOutcome) and rater == "clinician":
        b = s.blinding
        if b.assessor_unblinded_prob > 0 and b.assessor_bias != 0:
            out.append(
                f"unblinded assessors (blinding.assessor_unblinded_prob = "
                f"{b.assessor_unblinded_prob:g}, assessor_bias = {b.assessor_bias:g})"
            )
    if isinstance(o, BoundedOutcome) and rater == "self" and o.expectancy_bias != 0:
        out.append(f"expectancy bias (outcomes.{outcome}.expectancy_bias = {o.expectancy_bias:g})")
    d = s.dropout
    if d.completion_target < 1.0:
        if d.mechanism == "MNAR" and d.outcome_log_odds != 0:
            out.append(
                f"informative dropout (dropout.mechanism = MNAR, outcome_log_odds = "
                f"{d.outcome_log_odds:g})"
            )
        if d.mechanism in ("MAR", "MNAR") and (
            d.attendance_log_odds != 0 or d.treated_log_odds != 0 or d.baseline_log_odds != 0
        ):
            out.append(
                f"dropout depending on attendance/baseline (dropout.mechanism = {d.mechanism})"
            )
    if s.design.contamination > 0:
        out.append(f"contamination (design.contamination = {s.design.contamination:g})")
    return out


def unbiased_scenario(s: Scenario) -> Scenario:
    """The same scenario with the bias sources of :func:`bias_sources` switched off: blinded
    assessors, no expectancy bias, dropout completely at random at the same completion, no
    contamination. Everything else (and its random numbers) is unchanged."""
    outcomes = {
        k: o.model_copy(update={"expectancy_bias": 0.0}) if isinstance(o, BoundedOutcome) else o
        for k, o in s.outcomes.items()
    }
    return s.model_copy(
        update={
            "outcomes": outcomes,
            "blinding": s.blinding.model_copy(update={"assessor_bias": 0.0}),
            "dropout": s.dropout.model_copy(update={"mechanism": "MCAR"}),
            "design": s.design.model_copy(update={"contamination": 0.0}),
        }
    )


def observed_power_note(s: Scenario) -> str | None:
    """A warning when the scenario was calibrated from trial data (its effect estimated from
    the data whose power is asked for)."""
    if CALIBRATED_MARKER not in (s.description or "").lower():
        return None
    return (
        "this scenario was calibrated from trial data (its description says so): power at an "
        "effect estimated from the same data is observed power, a restatement of that trial's "
        "p-value, not the power of a new trial. Plan with an effect set independently "
        "(e.g. --set outcomes.<name>.effect=<MCID>) or use 'trialsim assurance' with the "
        "scenario's design priors"
    )


def headline_lines(result: dict) -> list[str]:
    """Warnings under the power table, from ``result['headlines']`` (filled by the CLI)."""
    lines = []
    for h in result.get("headlines", []):
        if h.get("kind") == "observed_power":
            lines.append(f"warning: {h['text']}")
            continue
        sources = "; ".join(h["sources"]) or "none switched on that trialsim knows of"
        who = h["analysis"] + (f" ({h['contrast']})" if "contrast" in h else "")
        if h.get("type1_flagged", True):
            line = (
                f"warning: {who} on {h['outcome']} rejects a true null in "
                f"{h['type1']:.3f} +- {h['type1_mcse']:.3f} of trials (alpha {h['alpha']:g}): "
                f"the scenario biases it (bias {h['bias']:+.3g}). Its power {h['power']:.3f} is "
                "a rejection rate"
            )
        else:
            line = (
                f"warning: the scenario biases {who} on {h['outcome']} by {h['bias']:+.3g} +- "
                f"{h['bias_mcse']:.3g} (type I {h['type1']:.3f} +- {h['type1_mcse']:.3f}). "
                f"Its power {h['power']:.3f} is not the power at the true effect"
            )
        if "power_true_effect" in h:
            line += (
                f"; power at the true effect {h['power_true_effect']:.3f} +- "
                f"{h['power_true_effect_mcse']:.3f} (same trials, bias sources off)"
            )
        lines.append(line + f". Bias sources: {sources}")
    return lines
