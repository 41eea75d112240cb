"""The power section of the report for a trial with three or more arms: the decision's power
first (any arm / all arms significant after the multiplicity adjustment), then one row per
contrast and the decisions table, simulated with the analytic values beside them."""

from __future__ import annotations

from trialsim.report.numbers import count, missing, percent, pm
from trialsim.report.report import Block, table

_NAMES = {"none": "unadjusted", "holm": "Holm", "dunnett": "Dunnett"}
# the analytic adjustment beside each simulated one (Holm's "any" is Bonferroni's)
_ANALYTIC = {"none": "none", "holm": "bonferroni", "dunnett": "dunnett"}


def _headline_adjustment(decisions: dict) -> str:
    """Dunnett when the analysis allows it (exact for the joint model), else Holm."""
    return "dunnett" if "dunnett" in decisions else "holm"


def opening_sentence(p: dict, outcome: str) -> str:
    """One sentence naming the decision power of the first simulated analysis (or the
    analytic one when nothing was simulated)."""
    analytic = p.get("analytic_decisions") or {}
    summaries = p.get("multi_arm") or []
    if summaries:
        m = summaries[0]
        adj = _headline_adjustment(m["decisions"])
        d = m["decisions"][adj]
        k = len(m["contrasts"])
        both = "both" if k == 2 else f"all {k}"
        text = (
            f"Of the {k} arms compared with {m['reference']} on {outcome}, at least one is "
            f"significant in {percent(d['any_power'], d['any_power_mcse'])} of simulated trials "
            f"and {both} in {percent(d['all_power'], d['all_power_mcse'])} ({m['analysis']} "
            f"analysis, {_NAMES[adj]} adjustment, family-wise error "
            f"{percent(d['fwer'], d['fwer_mcse'], digits=1)}, {count(d['reps'])} simulated trials"
        )
        a = analytic.get("adjustments", {}).get(_ANALYTIC[adj])
        if a is not None:
            bound = "at least " if adj == "holm" else ""
            text += f"; analytic {percent(a['any'])} and {bound}{percent(a['all'])}"
        return text + ")."
    if "adjustments" in analytic:
        a = analytic["adjustments"]["dunnett"]
        k = len(analytic["arms"])
        reference = (p.get("analytic_contrasts") or [{}])[0].get("reference", "the reference")
        return (
            f"Of the {k} arms compared with {reference} on {outcome}, the analytic formula "
            f"gives {percent(a['any'])} power that at least one is significant and "
            f"{percent(a['all'])} that all are (Dunnett adjustment); the weakest contrast alone "
            f"has {percent(analytic['adjustments']['none']['each'])} (unadjusted)."
        )
    return ""


def bias_sentences(p: dict) -> list[str]:
    """The headlines ``trialsim power`` raised for biased contrasts, as one sentence per
    analysis."""
    by_analysis: dict[str, list[dict]] = {}
    for h in p.get("headlines", []):
        if h.get("kind") == "biased":
            by_analysis.setdefault(h["analysis"], []).append(h)
    out = []
    for analysis, hits in by_analysis.items():
        parts = []
        for h in hits:
            bias = pm(h["bias"], h.get("bias_mcse"), 2)
            part = f"{h.get('contrast', 'the effect')} by {bias} points"
            if "power_true_effect" in h:
                part += (
                    f" (power {percent(h['power'])}, at the true effect "
                    f"{percent(h['power_true_effect'], h['power_true_effect_mcse'])})"
                )
            parts.append(part)
        sources = "; ".join(hits[0].get("sources", [])) or "none that trialsim knows of"
        out.append(
            f"The scenario biases {analysis} on {' and '.join(parts)}: the simulated power is "
            f"a rejection rate, not the power at the true effect (bias sources: {sources})."
        )
    return out


def contrast_rows(p: dict, sims: list[dict]) -> tuple[tuple, list[tuple]]:
    """One row per analysis and contrast, then the analytic power of each contrast."""
    first = (p.get("multi_arm") or p.get("analytic_contrasts") or [{}])[0]
    reference = first.get("reference") or "the reference"
    if not sims:
        rows = [
            (c["arm"], percent(c["power"]))
            for c in p.get("analytic_contrasts", [])
            if "error" not in c and not missing(c.get("power"))
        ]
        return (f"arm vs {reference}", "analytic power"), rows
    header = (f"analysis: arm vs {reference}", "power", "type-I error", "bias (points)")
    header += ("CI coverage",)
    rows = [
        (
            f"{a['analysis']}: {a.get('arm', a.get('contrast', ''))}",
            percent(a["power"], a.get("power_mcse")),
            percent(a.get("type1"), a.get("type1_mcse"), digits=1),
            pm(a.get("bias"), a.get("bias_mcse"), 2),
            percent(a.get("coverage"), a.get("coverage_mcse"), digits=1),
        )
        for a in sims
    ]
    for c in p.get("analytic_contrasts", []):
        if "error" not in c and not missing(c.get("power")):
            rows.append((f"analytic: {c['arm']}", percent(c["power"]), "", "", ""))
    return header, rows


def decision_blocks(p: dict) -> list[Block]:
    """The decisions table of each simulated analysis (analytic any/all beside), or the
    analytic decisions alone."""
    analytic = p.get("analytic_decisions") or {}
    beside = analytic.get("adjustments")
    blocks: list[Block] = []
    for m in p.get("multi_arm") or []:
        header = ("adjustment", "any arm", "all arms", "FWER (no effect)")
        if beside:
            header += ("analytic any", "analytic all")
        rows = []
        for name, d in m["decisions"].items():
            row = (
                _NAMES[name],
                percent(d["any_power"], d["any_power_mcse"]),
                percent(d["all_power"], d["all_power_mcse"]),
                percent(d["fwer"], d["fwer_mcse"], digits=1),
            )
            if beside:
                a = beside[_ANALYTIC[name]]
                row += (percent(a["any"]), ("≥ " if name == "holm" else "") + percent(a["all"]))
            rows.append(row)
        blocks.append(
            Block("text", f"Decisions over the contrasts with {m['reference']} ({m['analysis']}):")
        )
        blocks += table(header, rows)
    if not blocks and beside:
        names = {"none": "unadjusted", "bonferroni": "Bonferroni", "dunnett": "Dunnett"}
        rows = [
            (names[k], percent(a["each"]), percent(a["any"]), percent(a["all"]))
            for k, a in beside.items()
        ]
        blocks += table(("adjustment", "weakest arm", "any arm", "all arms"), rows)
    if beside and p.get("multi_arm"):
        blocks.append(
            Block(
                "text",
                "Analytic: the contrasts' multivariate noncentral t (they share the reference "
                "arm); beside Holm, Bonferroni's values (the same 'any', a lower bound for "
                "'all'). FWER: at least one arm significant when no arm has an effect.",
            )
        )
    elif beside:
        blocks.append(
            Block(
                "text",
                "Analytic: the contrasts' multivariate noncentral t (they share the reference "
                "arm). Holm's 'any arm' power is Bonferroni's, its 'all arms' power at least "
                "Bonferroni's.",
            )
        )
    return blocks
