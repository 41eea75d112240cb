"""The report's sections for outputs trialsim knows, each: heading, one-sentence answer,
figure(s), compact table. And the one provenance section that closes the report.

Each ``*_section(root, ctx)`` returns ``(blocks, files used)`` or ``None`` when its outputs
are not in the folder. Files are found by name anywhere under the folder, so a report works on
one command's folder as well as on a folder holding several.
"""

from __future__ import annotations

import json
from pathlib import Path

from trialsim.files import read_csv_table
from trialsim.report.numbers import count, missing, money, number, percent, pm, span
from trialsim.report.provenance import PROVENANCE_FILE
from trialsim.report.report import Block, read_json, table
from trialsim.report.style import key_label

DATA_ROWS = 4  # the data file is shown transposed: a row per column, its first rows across
Z_NOTE = "± is one Monte Carlo standard error (the uncertainty from simulating a finite number "
Z_NOTE += "of trials)."


def _find(root: Path, name: str) -> Path | None:
    hits = sorted(root.rglob(name), key=lambda p: (len(p.parts), str(p)))
    hits = [p for p in hits if "cells" not in p.relative_to(root).parts]
    return hits[0] if hits else None


def _load(path: Path | None):
    if path is None:
        return None
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None


def _outcome(name: str | None) -> str:
    if not name:
        return "the outcome"
    return name.upper() if len(name) <= 5 else name


def _image(path: Path | None) -> list[Block]:
    return [Block("image", path.name, path=path)] if path is not None and path.is_file() else []


def known_sections(root: Path, *, currency: str | None = None):
    """(blocks, files) of every known output found under ``root``, in reading order."""
    ctx = {"currency": currency}
    for make in (
        power_section,
        recruitment_section,
        compare_section,
        budget_section,
        sweep_section,
        bayes_section,
        assurance_section,
        reanalysis_section,
        data_section,
    ):
        found = make(root, ctx)
        if found is not None:
            yield found


# --- power ----------------------------------------------------------------------------------


def power_section(root: Path, ctx: dict):
    path = _find(root, "power.json")
    p = _load(path)
    if not isinstance(p, dict) or "analyses" not in p:
        return None
    used = [path]
    sims = [a for a in p["analyses"] if a.get("method", "simulation") == "simulation"]
    analytic = p.get("analytic") if isinstance(p.get("analytic"), dict) else None
    outcome = _outcome(p.get("outcome"))
    target = 0.8
    groups_needed = _groups_needed(root)
    sentences = []
    arms = "multi_arm" in p or "analytic_decisions" in p
    if arms:
        from trialsim.report.power_arms import opening_sentence

        sentences.append(opening_sentence(p, outcome))
    elif sims:
        a = sims[0]
        n_groups = analytic.get("n_groups") if analytic else None
        who = f"With {count(n_groups)} groups the" if n_groups else "The"
        s = (
            f"{who} trial has {percent(a['power'], a.get('power_mcse'))} power to detect an "
            f"effect of {number(a['truth'], 2)} {outcome} points ({a['analysis']} analysis, "
            f"{count(a['reps'])} simulated trials"
        )
        if analytic and not missing(analytic.get("power")):
            s += f"; analytic formula {percent(analytic['power'])}"
        s += ")"
        if groups_needed:
            s += f"; {groups_needed} give {percent(target)} (analytic)"
        sentences.append(s + ".")
    elif analytic:
        sentences.append(
            f"The analytic formula gives {percent(analytic['power'])} power to detect "
            f"{number(analytic['effect'], 2)} {outcome} points."
        )
    if arms and p.get("headlines"):
        from trialsim.report.power_arms import bias_sentences

        sentences += bias_sentences(p)
    else:
        sentences += _type1_sentences(sims, p.get("alpha", 0.05))
    blocks = [Block("heading", "Power"), Block("answer", " ".join(sentences))]
    figure = _find(root, "running-power.png")
    blocks += _image(figure)
    used += [figure] if figure else []
    header = ("analysis", "power", "type-I error", "bias (points)", "CI coverage")
    rows = [
        (
            a["analysis"],
            percent(a["power"], a.get("power_mcse")),
            percent(a.get("type1"), a.get("type1_mcse"), digits=1),
            pm(a.get("bias"), a.get("bias_mcse"), 2),
            percent(a.get("coverage"), a.get("coverage_mcse"), digits=1),
        )
        for a in sims
    ]
    if arms:
        from trialsim.report.power_arms import contrast_rows

        header, rows = contrast_rows(p, sims)
    elif analytic and not missing(analytic.get("power")):
        rows.append(
            (f"analytic ({analytic.get('formula', '')})", percent(analytic["power"]), "", "", "")
        )
    if rows:
        blocks += table(header, rows)
    if rows and (sims or not arms):
        failed = sum(int(a.get("failures", 0) or 0) for a in sims)
        blocks.append(
            Block(
                "text",
                f"Failed fits: {count(failed)}. Bias is the mean estimate "
                "minus the true effect. " + Z_NOTE,
            )
        )
    if arms:
        from trialsim.report.power_arms import decision_blocks

        blocks += decision_blocks(p)
    return blocks, used


def _type1_sentences(sims: list[dict], alpha: float) -> list[str]:
    """A sentence for the first simulated analysis (with 3+ arms: each contrast) whose
    type-I error is above the nominal level by more than 2 Monte Carlo SEs."""
    out = []
    for a in sims if any("contrast" in a for a in sims) else sims[:1]:
        t1, t1se = a.get("type1"), a.get("type1_mcse")
        if missing(t1) or missing(t1se) or t1 - 2 * t1se <= alpha:
            continue
        whose = "Its" if "contrast" not in a else f"The {a['contrast']} contrast's"
        out.append(
            f"{whose} type-I error is {percent(t1, t1se, digits=1)}, above the nominal "
            f"{percent(alpha)}: this power is overstated; prefer an analysis that holds alpha."
        )
    return out


def _groups_needed(root: Path) -> str | None:
    """'49 treatment groups' for the scenario's own design, from the comparison's table."""
    rec = _load(_find(root, "recruitment.json")) or {}
    comp = _load(_find(root, "compare.json")) or {}
    rows = comp.get("rows") or []
    design = rec.get("design")
    for r in rows:
        if r.get("design") == design and not missing(r.get("groups_needed")):
            return f"{count(r['groups_needed'])} {r.get('groups_unit') or 'groups'}"
    return None


# --- recruitment ----------------------------------------------------------------------------


def recruitment_section(root: Path, ctx: dict):
    from trialsim.report.timeline import _TABLE_ROWS

    path = _find(root, "recruitment.json")
    r = _load(path)
    if not isinstance(r, dict) or "months_to_full_enrolment" not in r:
        return None
    used = [path]
    m = r["months_to_full_enrolment"]
    cal = r.get("calendar", {})
    full = cal.get("full_enrolment_date", {})
    answer = (
        f"Enrolling {count(r['recruited']['median'])} participants takes a median "
        f"{number(m['median'])} months (10th-90th percentile {span(m['p10'], m['p90'])})"
    )
    if full:
        answer += f", full enrolment around {full['median']} ({full['p10']} to {full['p90']})"
    g = r.get("groups_started")
    if g:
        answer += (
            f"; {count(g['median'])} groups start and {count(r['groups_cancelled']['median'])} "
            f"are cancelled"
        )
    answer += f" ({count(r['reps'])} simulated recruitments, {r['design']} randomisation)."
    blocks = [Block("heading", "Recruitment and timeline"), Block("answer", answer)]
    figure = _find(root, "recruitment.png")
    blocks += _image(figure)
    used += [figure] if figure else []
    rows = []
    for key, label in _TABLE_ROWS:
        q = r.get(key)
        if not isinstance(q, dict):
            continue
        fmt = number if "month" in key or "mean" in key or "per" in key else count
        rows.append((label.strip(), fmt(q["median"]), span(q["p10"], q["p90"], fmt)))
    blocks += table(("", "median", "10th to 90th percentile"), rows)
    return blocks, used


# --- design comparison ----------------------------------------------------------------------


def compare_section(root: Path, ctx: dict):
    path = _find(root, "compare.json")
    c = _load(path)
    if not isinstance(c, dict) or not c.get("rows"):
        return None
    used = [path, path.with_suffix(".csv")]
    rows = [r for r in c["rows"] if not missing(r.get("power")) and not r.get("error")]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["power"])
    target = c.get("target_power", 0.8)
    answer = (
        f"Of {len(rows)} randomisation designs compared on common random numbers, "
        f"{best['design']} has the highest power, {percent(best['power'], best.get('power_mcse'))}"
    )
    fewest = [r for r in rows if not missing(r.get("groups_needed"))]
    if fewest:
        f = min(fewest, key=lambda r: r["groups_needed"])
        answer += (
            f"; {f['design']} needs the fewest {f.get('groups_unit') or 'groups'} for "
            f"{percent(target)} power ({count(f['groups_needed'])})"
        )
    blocks = [Block("heading", "Which randomisation unit?"), Block("answer", answer + ".")]
    figure = _find(root, "compare.png")
    blocks += _image(figure)
    used += [figure] if figure else []
    header = (
        "design",
        "power",
        "type-I error",
        f"groups for {percent(target)}",
        "months to enrol",
        "staff hours",
    )
    table_rows = [
        (
            r["design"],
            percent(r["power"], r.get("power_mcse")),
            percent(r.get("type1"), r.get("type1_mcse"), digits=1),
            count(r.get("groups_needed")),
            number(r.get("months_to_full_enrolment_median")),
            count(r.get("staff_hours_median")),
        )
        for r in rows
    ]
    blocks += table(header, table_rows)
    blocks.append(
        Block(
            "text",
            f"Analysis: {rows[0]['analysis']}; months and staff hours are "
            "medians over simulated recruitments. " + Z_NOTE,
        )
    )
    return blocks, used


# --- budget ---------------------------------------------------------------------------------


def budget_section(root: Path, ctx: dict):
    path = _find(root, "budget.json")
    b = _load(path)
    if not isinstance(b, dict) or "best" not in b:
        return None
    used = [path, path.with_suffix(".csv")]
    cur = b.get("currency") or ctx.get("currency")
    best = b["best"]
    answer = (
        f"For {money(b['budget'], cur)} the best use is {count(best['n_groups'])} groups of "
        f"{count(best['group_size'])} ({count(best['participants'])} participants, "
        f"{count(best['trainers'])} trainers, cost {money(best['cost'], cur)}), with "
        f"{percent(best['power'])} analytic power."
    )
    if not cur:
        answer += " (Amounts in the budget's currency.)"
    blocks = [Block("heading", "Budget"), Block("answer", answer)]
    figure = _find(root, "budget.png")
    blocks += _image(figure)
    used += [figure] if figure else []
    costs = b.get("costs", {})
    if costs:
        blocks.append(
            Block(
                "text",
                "Costs: "
                + ", ".join(f"{money(v, cur)} {k.replace('_', ' ')}" for k, v in costs.items()),
            )
        )
    rows = [
        (
            count(r["group_size"]),
            count(r["n_groups"]),
            count(r["participants"]),
            count(r["trainers"]),
            money(r["cost"], cur),
            percent(r["power"]),
        )
        for r in b.get("by_group_size", [])
    ]
    blocks += table(("group size", "groups", "participants", "trainers", "cost", "power"), rows)
    return blocks, used


# --- sweep ----------------------------------------------------------------------------------


def sweep_section(root: Path, ctx: dict):
    path = _find(root, "results.csv")
    if path is None:
        return None
    frame = read_csv_table(path)
    if "power" not in frame or "cell" not in frame:
        return None
    used = [path, path.with_suffix(".parquet")]
    ok = frame[frame["error"].isna()] if "error" in frame else frame
    fixed = {"cell", "analysis", "outcome", "reps", "truth", "seed", "seconds", "error"}
    keys = [c for c in frame.columns if "." in c and c not in fixed]
    if ok.empty or not keys:
        return None

    def where(r) -> str:
        return ", ".join(f"{key_label(k)} = {_value(r[k])}" for k in keys)

    lo, hi = ok.loc[ok["power"].idxmin()], ok.loc[ok["power"].idxmax()]
    answer = (
        f"Across {len(ok)} scenarios ({count(ok['reps'].iloc[0])} simulated trials each) power "
        f"ranges from {percent(lo['power'], lo.get('power_mcse'))} ({where(lo)}) to "
        f"{percent(hi['power'], hi.get('power_mcse'))} ({where(hi)})."
    )
    if "type1" in ok and ok["type1"].notna().any():
        t = ok.loc[ok["type1"].idxmax()]
        answer += (
            f" The largest type-I error is {percent(t['type1'], t.get('type1_mcse'), digits=1)}."
        )
    blocks = [Block("heading", "Sweep: power across assumptions"), Block("answer", answer)]
    for figure in sorted(path.parent.glob("*.png")):
        blocks += _image(figure)
        used.append(figure)
    for analysis, part in ok.groupby("analysis", sort=False):
        if len(keys) == 2:
            for value, label in (("power", "power"), ("type1", "type-I error")):
                if value not in part:
                    continue
                grid = part.pivot_table(index=keys[0], columns=keys[1], values=value, sort=True)
                se = part.pivot_table(
                    index=keys[0], columns=keys[1], values=f"{value}_mcse", sort=True
                )
                header = (key_label(keys[0]), *(_value(c) for c in grid.columns))
                rows = [
                    (
                        _value(i),
                        *(
                            percent(
                                grid.loc[i, c], se.loc[i, c], digits=0 if value == "power" else 1
                            )
                            for c in grid.columns
                        ),
                    )
                    for i in grid.index
                ]
                blocks.append(
                    Block(
                        "text",
                        f"**{label}, {analysis} analysis** (rows: "
                        f"{key_label(keys[0])}; columns: {key_label(keys[1])})",
                    )
                )
                blocks += table(header, rows)
        else:
            header = (*(key_label(k) for k in keys), "power", "type-I error")
            rows = [
                (
                    *(_value(r[k]) for k in keys),
                    percent(r["power"], r.get("power_mcse")),
                    percent(r.get("type1"), r.get("type1_mcse"), digits=1),
                )
                for _, r in part.iterrows()
            ]
            blocks.append(Block("text", f"**{analysis} analysis**"))
            blocks += table(header, rows)
    blocks.append(Block("text", Z_NOTE))
    return blocks, used


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# --- Bayesian analysis ----------------------------------------------------------------------


def bayes_section(root: Path, ctx: dict):
    path = None
    for candidate in sorted(root.rglob("summary.json")):
        d = _load(candidate)
        if isinstance(d, dict) and "p_benefit" in d and "parameters" in d:
            path, b = candidate, d
            break
    if path is None:
        return None
    used = [path]
    outcome = _outcome(b.get("outcome"))
    effect = next((p for p in b["parameters"] if p["parameter"] == "effect"), None)
    level = b.get("hdi_prob", 0.95)
    answer = f"Under the {_prior_words(b.get('prior'), b.get('prior_text'))}"
    if effect:
        answer += (
            f", the effect on {outcome} is {number(effect['mean'], 2)} points "
            f"({percent(level)} HDI "
            f"{span(effect['hdi_low'], effect['hdi_high'], lambda v: number(v, 2))})"
        )
    answer += f"; the probability of any benefit is {percent(b['p_benefit'], digits=1)}"
    if not missing(b.get("p_beyond_mcid")) and b.get("mcid") is not None:
        direction = "" if b.get("better", "higher") == "higher" else " (lower is better)"
        answer += (
            f" and of a benefit beyond the MCID of {number(b['mcid'])} points{direction} "
            f"{percent(b['p_beyond_mcid'], digits=1)}"
        )
    blocks = [
        Block("heading", "Bayesian analysis of the trial data"),
        Block("answer", answer + "."),
    ]
    for name in ("posterior_mcid.png", "prior_posterior.png", "trace.png"):
        figure = path.parent / name
        blocks += _image(figure)
        used.append(figure)
    rows = [
        (
            p["parameter"],
            number(p["mean"]),
            number(p["sd"]),
            span(p["hdi_low"], p["hdi_high"]),
            f"{p['r_hat']:.3f}",
            count(p["ess_bulk"]),
        )
        for p in b["parameters"]
    ]
    blocks += table(("parameter", "mean", "SD", f"{percent(level)} HDI", "R-hat", "ESS"), rows)
    diag = b.get("diagnostics") or {}
    if diag:
        blocks.append(
            Block(
                "text",
                (
                    f"Model {b.get('model')}, {b.get('residual')} residuals, group-SD prior "
                    f"{b.get('group_sd_prior')}; {diag.get('chains')} chains x "
                    f"{count(diag.get('draws'))} draws, {count(diag.get('divergences'))} "
                    f"divergences, max R-hat {diag.get('max_r_hat', float('nan')):.3f}, "
                    f"{count(b.get('n_used'))} participants."
                ),
            )
        )
    return blocks, used


def _prior_words(prior, text) -> str:
    """'sceptical prior (normal, mean 0, SD 4.26)'."""
    if isinstance(prior, dict) and prior.get("sd") is not None:
        return (
            f"{prior.get('name', '')} prior (normal, mean {number(prior.get('mean', 0))}, "
            f"SD {number(prior['sd'])})"
        ).replace("  ", " ")
    if isinstance(prior, dict) and prior.get("name"):
        return f"{prior['name']} prior"
    return f"prior {text}" if text else "prior"


# --- assurance ------------------------------------------------------------------------------


def assurance_section(root: Path, ctx: dict):
    path = _find(root, "assurance.json")
    a = _load(path)
    if not isinstance(a, dict) or "assurance" not in a:
        return None
    priors = "; ".join(f"{k} {v}" for k, v in (a.get("design_priors") or {}).items())
    answer = (
        f"Averaged over the design priors ({priors}), the next trial meets "
        f"'{a['decision']}' with probability {percent(a['assurance'], a.get('assurance_mcse'))} "
        f"(assurance)"
    )
    if not missing(a.get("p_success_mcid")):
        answer += f"; {percent(a['p_success_mcid'], a.get('p_success_mcid_mcse'))} if the "
        answer += "true effect equals the MCID"
    answer += (
        f" and {percent(a['p_success_null'], a.get('p_success_null_mcse'), digits=1)} if there "
        f"is no effect."
    )
    blocks = [Block("heading", "Assurance of the next trial"), Block("answer", answer)]
    rows = [
        ("assurance (over the design priors)", percent(a["assurance"], a.get("assurance_mcse"))),
        (
            "success if the effect is the MCID",
            percent(a.get("p_success_mcid"), a.get("p_success_mcid_mcse")),
        ),
        (
            "success if there is no effect",
            percent(a.get("p_success_null"), a.get("p_success_null_mcse"), digits=1),
        ),
        ("analysis prior", a.get("prior_text", "")),
        ("model", a.get("model", "")),
        (
            "simulated trials",
            f"{count(a['n_draws'])} design-prior draws x {count(a['reps_per_draw'])} trials",
        ),
        ("failed fits", count(a.get("failed", 0))),
    ]
    check = a.get("mcmc_check")
    if isinstance(check, dict):
        rows.append(
            (
                "MCMC check: decisions agree",
                f"{percent(check['decision_agreement'])} of {count(check['trials'])} trials",
            )
        )
    blocks += table(("", "value"), rows)
    blocks.append(Block("text", Z_NOTE))
    per_draw = path.with_name(f"{path.stem}-draws.csv")
    if per_draw.is_file():
        blocks.append(
            Block("text", f"The success rate of each design-prior draw is in `{per_draw.name}`.")
        )
    return blocks, [path, path.with_suffix(".csv"), per_draw]


# --- reanalysis, data -----------------------------------------------------------------------


def reanalysis_section(root: Path, ctx: dict):
    figure = _find(root, "reanalysis.png")
    record = _load(_find(root, "reanalysis.json"))
    if figure is None and not isinstance(record, dict):
        return None
    blocks = [Block("heading", "A published result under a sceptical prior")]
    if isinstance(record, dict) and "p_benefit" in record:
        blocks.append(
            Block(
                "answer",
                (
                    f"Under the {_prior_words(record.get('prior'), record.get('prior_text'))} the "
                    f"probability of benefit is "
                    f"{percent(record['p_benefit'], digits=1)} and of a benefit beyond the MCID "
                    f"{percent(record['p_beyond_mcid'], digits=1)}."
                ),
            )
        )
    else:
        blocks.append(
            Block(
                "answer",
                (
                    "The published estimate (likelihood) is combined with the prior; the shaded "
                    "area is the posterior probability of an effect beyond the MCID, written in "
                    "the legend."
                ),
            )
        )
    blocks += _image(figure)
    return blocks, [f for f in (figure, _find(root, "reanalysis.json")) if f]


def data_section(root: Path, ctx: dict):
    from trialsim.report.numbers import cell as _cell

    path = _find(root, "example-trials.csv")
    if path is None:
        return None
    frame = read_csv_table(path)
    reps = frame["rep"].nunique() if "rep" in frame else 1
    answer = (
        f"{count(reps)} simulated trials in the long format `trialsim analyse` reads: "
        f"{count(len(frame))} rows (one per participant and visit), {len(frame.columns)} columns."
    )
    blocks = [Block("heading", "Simulated trial data"), Block("answer", answer)]
    first = frame.head(DATA_ROWS)
    rows = [(str(c), *(_cell(v) for v in first[c])) for c in first.columns]
    blocks += table(("column", *(f"row {i + 1}" for i in range(len(first)))), rows)
    sidecar = path.with_name(path.name + ".trialsim.json")
    if sidecar.is_file():
        blocks.append(Block("text", f"The trial's structure is in `{sidecar.name}` beside it."))
    return blocks, [path, sidecar]


# --- provenance -----------------------------------------------------------------------------


def provenance_section(root: Path, files: list[Path]) -> list[Block]:
    """One section: each output's command line, time and seed; scenario and data hashes;
    package versions (once, with any output that used other versions named)."""
    records = []
    for f in files:
        if f.suffix.lower() != ".json":
            continue
        d = _load(f)
        if not isinstance(d, dict):
            continue
        if f.name == PROVENANCE_FILE:
            records.append((f, d))
        elif isinstance(d.get("provenance"), dict):
            prov = dict(d["provenance"])
            prov.setdefault("scenario", d.get("scenario"))
            if "python" in prov and isinstance(prov.get("packages"), dict):
                prov["packages"] = {"python": prov["python"], **prov["packages"]}
            records.append((f, prov))
        elif isinstance(d.get("versions"), dict):
            records.append(
                (
                    f,
                    {
                        "seed": d.get("seed"),
                        "packages": d["versions"],
                        "scenario": d.get("scenario"),
                        "scenario_sha256": d.get("scenario_sha256"),
                        "data": d.get("data"),
                        "data_sha256": d.get("data_sha256"),
                    },
                )
            )
    if not records:
        return []
    blocks = [Block("heading", "Provenance")]
    commands = [p.get("command_line") for _, p in records if p.get("command_line")]
    if commands:
        blocks.append(Block("text", "Commands that wrote these outputs:"))
        blocks.append(Block("code", "\n".join(dict.fromkeys(commands))))
    rows = []
    for f, p in records:
        rel = f.relative_to(root).as_posix()
        when = (p.get("created_utc") or "").replace("T", " ").replace("Z", "")
        seed = "" if p.get("seed") is None else str(p["seed"])
        rows.append((rel, when, seed))
    blocks += table(("output", "created (UTC)", "seed"), rows)
    files_seen = {}
    for _, p in records:
        pairs = (
            (p.get("scenario_file"), p.get("scenario_file_sha256")),
            (f"scenario {p.get('scenario')} as validated", p.get("scenario_sha256")),
            (p.get("data"), p.get("data_sha256")),
        )
        for name, digest in pairs:
            if name and digest and "None" not in str(name):
                files_seen.setdefault((str(name), digest), None)
    if files_seen:
        blocks.append(Block("text", "Inputs (SHA-256):"))
        blocks.append(Block("code", "\n".join(f"{d}  {n}" for n, d in files_seen)))
    versions: dict[str, dict[str, list[str]]] = {}
    for f, p in records:
        for pkg, v in (p.get("packages") or {}).items():
            versions.setdefault(pkg, {}).setdefault(str(v), []).append(f.name)
    lines = []
    for pkg, by_version in versions.items():
        if len(by_version) == 1:
            lines.append(f"{pkg} {next(iter(by_version))}")
        else:
            lines.append(
                f"{pkg} "
                + " / ".join(
                    f"{v} ({', '.join(sorted(set(names)))})" for v, names in by_version.items()
                )
            )
    blocks.append(Block("text", "Package versions: " + ", ".join(lines) + "."))
    platforms = {p.get("platform") for _, p in records if p.get("platform")}
    if platforms:
        blocks.append(Block("text", "Platform: " + ", ".join(sorted(platforms)) + "."))
    return blocks
