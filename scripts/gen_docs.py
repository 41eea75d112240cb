"""Generate the reference pages of the documentation from the code, so they cannot drift.

    python scripts/gen_docs.py           # (re)write docs/scenario-reference.md and docs/cli.md
    python scripts/gen_docs.py --check   # exit 1 if either page differs from the code

* ``docs/scenario-reference.md``: every scenario key from the pydantic model in
  ``trialsim/scenario.py``: type, allowed range (the model's constraints), default, and what it
  means (the field's comment in the model, else its comment in ``scenarios/sft-19m.toml``,
  which names units).
* ``docs/cli.md``: the ``--help`` of every command, as ``trialsim CMD --help`` prints it.

``tests/test_docs.py`` runs the check, so a change to the model or the commands without
regenerating the pages fails the test suite.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
import types
import typing
from pathlib import Path

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trialsim import scenario as sc  # noqa: E402

SCENARIO_PAGE = ROOT / "docs" / "scenario-reference.md"
CLI_PAGE = ROOT / "docs" / "cli.md"
TEMPLATE = ROOT / "scenarios" / "sft-19m.toml"
HELP_WIDTH = 100

# ---- comments: in the model source and in the SFT template -------------------------------------


def _model_comments() -> dict[tuple[str, str], str]:
    """(class name, field) -> the comment on the field's line or the lines just above it."""
    source = Path(sc.__file__).read_text(encoding="utf-8")
    out: dict[tuple[str, str], str] = {}
    cls = None
    pending: list[str] = []
    lines = source.splitlines()
    for line in lines:
        m = re.match(r"class (\w+)\(", line)
        if m:
            cls, pending = m.group(1), []
            continue
        stripped = line.strip()
        if cls is None or not line.startswith("    ") or line.startswith("        "):
            if not line.startswith("        "):
                pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# ").strip())
            continue
        m = re.match(r"(\w+)\s*:", stripped)
        if m and not stripped.startswith(("def ", "@", '"')):
            inline = _inline_comment(line)
            text = " ".join([*pending, *([inline] if inline else [])]).strip()
            if text:
                out[(cls, m.group(1))] = text
        pending = []
    return out


def _inline_comment(line: str) -> str | None:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError):
        return None
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            return tok.string.lstrip("# ").strip()
    return None


def _template_comments() -> dict[str, str]:
    """Dotted key -> the inline comment of that key in the SFT scenario file (outcomes as
    ``outcomes.*.KEY``, the first comment met for a key)."""
    out: dict[str, str] = {}
    table = ""
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\[([\w.]+)\]", line.strip())
        if m:
            table = re.sub(r"^outcomes\.\w+", "outcomes.*", m.group(1))
            continue
        m = re.match(r"(\w+)\s*=.*?#\s*(.+)$", line)
        if m and not line.lstrip().startswith("#"):
            key = f"{table}.{m.group(1)}" if table else m.group(1)
            out.setdefault(key, _no_private_refs(m.group(2).strip()))
    return out


def _no_private_refs(text: str) -> str:
    """Drop references to design notes users do not have."""
    text = re.sub(r",?\s*DESIGN\.md\s*§[\d.]+", "", text)
    return text.replace("( ", "(").replace(" )", ")").strip()


# ---- types, ranges, defaults -------------------------------------------------------------------


def _constraints(metadata) -> list:
    out = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            out.extend(item.metadata)
        else:
            out.append(item)
    return out


def _range(metadata) -> str:
    lo = hi = None
    lo_open = hi_open = False
    extra = []
    for c in _constraints(metadata):
        if isinstance(c, at.Ge):
            lo = c.ge
        elif isinstance(c, at.Gt):
            lo, lo_open = c.gt, True
        elif isinstance(c, at.Le):
            hi = c.le
        elif isinstance(c, at.Lt):
            hi, hi_open = c.lt, True
        elif isinstance(c, at.MinLen):
            extra.append("not empty" if c.min_length == 1 else f"length >= {c.min_length}")
        elif getattr(c, "pattern", None):
            extra.append(f"matches {_pattern_html(c.pattern)}")
    parts = []
    if lo is not None and hi is not None:
        parts.append(f"{'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}")
    elif lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {_num(lo)}")
    elif hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {_num(hi)}")
    return "; ".join(parts + extra)


def _num(x) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e5:
        return str(int(x)) if x != 0 else "0"
    return f"{x:g}" if isinstance(x, float) else str(x)


def _unwrap(tp):
    """(base type, metadata) of a possibly Annotated type."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        return base, meta
    return tp, []


def _type_and_range(tp, metadata=()) -> tuple[str, str]:
    tp, meta = _unwrap(tp)
    metadata = [*metadata, *meta]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        texts = [_type_and_range(a) for a in members]
        kind = " or ".join(t for t, _ in texts)
        rng = "; ".join(r for _, r in texts if r)
        if type(None) in args:
            kind += " (optional)"
        return kind, "; ".join(x for x in (_range(metadata), rng) if x)
    if origin is typing.Literal:
        return "text", "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            inner, rng = _type_and_range(args[0])
            return f"list of {inner}", (f"each {rng}" if rng else "")
        inner = [_type_and_range(a)[0] for a in args]
        return f"list of {len(args)} ({', '.join(inner)})", ""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "table", ""
    names = {float: "number", int: "integer", str: "text", bool: "true/false"}
    if tp in names:
        return names[tp], _range(metadata)
    if tp is sc.datetime.date:
        return "date (YYYY-MM-DD)", ""
    return getattr(tp, "__name__", str(tp)), _range(metadata)


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_num(v) if not isinstance(v, str) else f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"' if value else '""'
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return _num(value)


def _pattern_html(pattern: str) -> str:
    """A regular expression as code that may wrap after ``|``, ``,``, ``:`` and ``)`` (a pipe
    written as an entity, so the table does not split the cell there)."""
    import html

    text = html.escape(pattern)
    text = re.sub(r"([,:)])", r"\1<wbr>", text).replace("|", "&#124;<wbr>")
    return f"<code>{text}</code>"


def _key_cell(key: str) -> str:
    """A dotted key as code that may wrap after its dots and underscores (long keys would
    otherwise widen the table beyond the page)."""
    return "<code>" + re.sub(r"([._])", r"\1<wbr>", key) + "</code>"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: ``|`` escaped outside code spans (inside them the
    tables extension keeps it)."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


# ---- the scenario page -------------------------------------------------------------------------

SECTIONS = [
    ("", sc.Scenario, "Top level"),
    ("design", sc.Design, "[design]"),
    ("sites", sc.Sites, "[sites]"),
    ("sites.recruitment", sc.Recruitment, "[sites.recruitment]"),
    ("groups", sc.Groups, "[groups]"),
    ("groups.control", sc.ControlGroups, "[groups.control]"),
    ("attendance", sc.Attendance, "[attendance]"),
    ("correlation", sc.Correlation, "[correlation]"),
    ("dropout", sc.Dropout, "[dropout]"),
    ("blinding", sc.Blinding, "[blinding]"),
    ("outcomes.NAME", sc.BoundedOutcome, '[outcomes.NAME] with type = "bounded"'),
    ("outcomes.NAME", sc.ContinuousOutcome, '[outcomes.NAME] with type = "continuous"'),
    ("outcomes.NAME", sc.CountOutcome, '[outcomes.NAME] with type = "count"'),
    ("outcomes.NAME", sc.BinaryOutcome, '[outcomes.NAME] with type = "binary"'),
    ("covariates.NAME", sc.NumericCovariate, '[covariates.NAME] with type = "numeric"'),
    ("covariates.NAME", sc.CategoricalCovariate, '[covariates.NAME] with type = "categorical"'),
    ("analysis", sc.AnalysisPriors, "[analysis]"),
]

_SUBTABLES = {
    "sites.recruitment": "the `[sites.recruitment]` table below (omit it: not modelled)",
    "groups.control": "the `[groups.control]` table below (omit it: controls are not in groups)",
    "analysis": "the `[analysis]` table below",
    "design": "the `[design]` table below",
    "sites": "the `[sites]` table below",
    "groups": "the `[groups]` table below",
    "attendance": "the `[attendance]` table below",
    "correlation": "the `[correlation]` table below",
    "dropout": "the `[dropout]` table below",
    "blinding": "the `[blinding]` table below",
    "outcomes": "one `[outcomes.NAME]` table per outcome, below",
    "covariates": "one `[covariates.NAME]` table per baseline covariate, below",
    "design_priors": 'one `NAME = "family:p1,p2"` line per belief, e.g. `effect = "normal:4,2"`',
}


#: What a key means where the model's own comment is missing or the SFT template's comment is
#: about SFT only (``tests/test_docs.py`` checks every key here exists in the model).
MEANINGS = {
    "name": "the scenario's name (letters, digits, _ . -; it keys the random streams)",
    "description": "one line saying what the scenario is",
    "primary_outcome": "the outcome analysed and powered by default (default: the first)",
    "design_priors": (
        "beliefs about nature for `trialsim assurance`, in the `--design-prior` format"
    ),
    "covariates": "baseline covariates",
    "design.randomisation": (
        "what is randomised: people (individual, waitlist), recruitment cohorts (cohort), "
        "whole sites (municipality), or sites in steps (stepped-wedge)"
    ),
    "design.allocation_treated": "share randomised to the treated arm (two arms)",
    "design.contamination": (
        "share of the full effect reaching controls through staff trained in their site"
    ),
    "design.sessions_offered": "sessions of the group course offered to each treated participant",
    "design.visit_months": "months of the visits after randomisation; the first is 0 (baseline)",
    "sites.participants": "randomised participants per site (municipality); one value per site",
    "sites.names": "site names, one per site (default M1, M2, ...)",
    "sites.recruitment.referrals_per_month": (
        "referrals per month at full speed, per site (one value: the same for all)"
    ),
    "sites.recruitment.hours_per_motivation_contact": "staff hours per motivation contact",
    "groups.control.icc_group": "share of the control arm's variance between its groups",
    "groups.control.sessions_offered": "sessions offered in the control groups (default: design's)",
    "groups.control.mean_size": "participants per control group (default: groups.mean_size)",
    "attendance.dose_response": (
        "how the effect grows with the share of sessions attended: none (full effect for any "
        "attendance), linear, threshold, saturating"
    ),
    "dropout.mechanism": (
        "MCAR (completely at random), MAR (depends on baseline and attendance), MNAR (also on "
        "the unobserved outcome)"
    ),
    "outcomes.NAME.rater": (
        "who scores it: clinician (unblinded-assessor bias applies), self (expectancy bias "
        "applies) or register (no bias)"
    ),
    "outcomes.NAME.better": "direction of benefit",
    "outcomes.NAME.effect_by_visit": (
        "share of the full effect at each visit, one per visit, 0 at baseline (default: 0, "
        "then 1 at every follow-up)"
    ),
    "outcomes.NAME.expectancy_bias": (
        "self-reports: outcome units a treated participant adds after baseline (unblindable)"
    ),
    "outcomes.NAME.mcid": (
        "minimal clinically important difference, outcome units (> 0; its sign follows better)"
    ),
    "outcomes.NAME.mean": "control-arm mean, outcome units (counts: the mean count)",
    "outcomes.NAME.sd": "control-arm SD between people, outcome units",
    "outcomes.NAME.lower": "lowest value of the scale",
    "outcomes.NAME.upper": "highest value of the scale",
    "outcomes.NAME.step": "values are rounded to multiples of step (0: not rounded)",
    "outcomes.NAME.effect": (
        "treated minus control at full attendance, outcome units; with three or more arms one "
        "value per non-reference arm"
    ),
    "outcomes.NAME.sd_log": "SD of the log rate between people",
    "outcomes.NAME.rate_ratio": "rate ratio treated vs control at full attendance",
    "outcomes.NAME.prevalence": "share with the outcome (1) in the control arm",
    "outcomes.NAME.odds_ratio": "odds ratio treated vs control at full attendance",
    "covariates.NAME.mean": "mean, in the covariate's units",
    "covariates.NAME.sd": "SD, in the covariate's units",
    "covariates.NAME.effect": "outcome latent SDs per covariate SD",
    "covariates.NAME.levels": "level labels; the first is the reference level",
    "covariates.NAME.probs": "share of each level (sums to 1)",
    "covariates.NAME.effects": "outcome latent SDs, one per level (the first usually 0)",
    "analysis.prior": (
        "prior of the treatment effect: weakly-informative, sceptical, enthusiastic, flat or "
        '"normal:MEAN,SD" (outcome units)'
    ),
    "analysis.sceptical_tail": "sceptical prior: its probability of an effect beyond the MCID",
    "analysis.group_sd_prior": (
        'prior of the group SD, "half-normal:SCALE" or "half-t:SCALE[,NU]" in outcome units '
        "(default: half-normal, scale half the outcome SD)"
    ),
    "analysis.rope": "region of practical equivalence, [low, high] in outcome units",
}


def scenario_keys() -> set[str]:
    """Every documented key (``outcomes.NAME.mean`` style)."""
    keys = set()
    for prefix, model, _ in SECTIONS:
        keys |= {f"{prefix}.{n}" if prefix else n for n in model.model_fields}
    return keys


def scenario_page() -> str:
    model_notes = _model_comments()
    template_notes = _template_comments()
    out = [
        "# Scenario reference",
        "",
        "<!-- generated by scripts/gen_docs.py from trialsim/scenario.py: do not edit -->",
        "",
        "A scenario is a TOML file (see `scenarios/sft-19m.toml`, every key commented with its "
        "unit and source). This page lists every key the scenario model accepts: its type, the "
        "range it is checked against (`[a, b]` closed, `(a, b)` open), its default, and what it "
        "means. Unknown keys and values out of range are refused with one line naming the key. "
        "Any key can be changed for one run with `--set dotted.key=value` "
        "(e.g. `--set groups.icc_group=0.1`).",
        "",
        'A variant names its base and lists only what it changes: `base = "sft-19m.toml"` '
        "(a path relative to the variant file); tables are merged key by key.",
        "",
        "Where this page shows no meaning, the key's name and its table say it; "
        "`scenarios/sft-19m.toml` has the units and the sources of the SFT values.",
        "",
    ]
    for prefix, model, title in SECTIONS:
        out += [f"## {title}", ""]
        doc = (model.__doc__ or "").strip()
        if doc and model is not sc.Scenario:
            doc = re.sub(r":(?:mod|func|class):`~?([\w.]+)`", r"`\1`", doc)
            out += [" ".join(doc.split()), ""]
        out += ["| key | type | range | default | meaning |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = f"{prefix}.{name}" if prefix else name
            if name == "type":
                continue
            kind, rng = _type_and_range(field.annotation, field.metadata)
            if name in _SUBTABLES and (prefix == "" or key == "sites.recruitment"):
                kind, rng = "table", ""
            note = (
                MEANINGS.get(key)
                or model_notes.get((model.__name__, name))
                or model_notes.get((model.__mro__[1].__name__, name))
            )
            tkey = key.replace("outcomes.NAME", "outcomes.*")
            note = note or template_notes.get(tkey, "")
            sub = _SUBTABLES.get(key) or (_SUBTABLES.get(name) if prefix == "" else None)
            if sub:
                note = f"{MEANINGS[key]}: {sub}" if key in MEANINGS else sub
            out.append(
                f"| {_key_cell(key)} | {_cell(kind)} | {_cell(rng)} | {_cell(_default(field))} | "
                f"{_cell(note)} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# ---- the CLI page ------------------------------------------------------------------------------


#: the conventions every command follows (tests/test_cli_conventions.py checks them)
CONVENTIONS = [
    "## Conventions",
    "",
    "One spelling per concept, in every command:",
    "",
    "* **`--analysis NAME`** is the analysis (`trialsim analyses` lists them).",
    "* **`--method`** is how an answer is computed: `power` analytic, simulation or both; "
    "`bayes` mcmc or exact. No other command has it.",
    "* **`--out`** is a *folder* for commands that write several files (`bayes`, `compare`, "
    "`budget`, `sweep`, `assurance`) and a *file* for commands that write one (`simulate`, "
    "`calibrate`); each `--out` help says which. A file name given for a folder (or a folder "
    "for a file) stops with one line, exit code 2. `--plot` and `--keep-replicates` are files.",
    "* **`--format table|json|csv`** on every command that prints results. CSV is tidy: one "
    "header row, one row per result, on stdout (notes go to stderr).",
    "* **`--csv-dialect comma|semicolon`** on every command that prints or writes CSV: "
    "`semicolon` writes `;` between fields and a decimal comma (`1,5`), what a Danish or other "
    "European Excel opens. trialsim reads both dialects back.",
    "* **`--force`**: an existing output (file, or a file a command would write into its "
    "folder) is kept and the command stops with exit code 2 before any work, unless `--force` "
    "is given. `sweep --resume` continues the sweep in its folder; `sweep --force` starts it "
    "again. Every write is atomic (a temporary file renamed over the target when complete).",
    "* **Intervals are `LOW,HIGH`**: `--ci 0.55,1.02`, `--rope=-2,2`, `--bounds NAME=0,100`. "
    "Lists of values to run over are `a,b,c` or `start:stop:n` (`--vary`, `--curve`, "
    "`--range`, `--sizes`).",
    "",
    "Old spellings work for one release, hidden from `--help`, and print one line on stderr "
    "(`warning: OLD is deprecated; use NEW`):",
    "",
    "| Old | New |",
    "|---|---|",
    "| `trialsim analyse --method NAME` | `--analysis NAME` |",
    "| `trialsim reanalyse --ci LOW HIGH` | `--ci LOW,HIGH` |",
    "| `trialsim assurance --out FILE.json` (FILE.csv, FILE-draws.csv beside it) | "
    "`--out FOLDER` (assurance.json, assurance.csv, assurance-draws.csv in it) |",
    "",
]


def cli_page() -> str:
    import click

    from trialsim.cli import COMMANDS, main

    out = [
        "# Command-line reference",
        "",
        "<!-- generated by scripts/gen_docs.py from the click commands: do not edit -->",
        "",
        "Every command prints this with `trialsim COMMAND --help` (or `-h`). Exit codes: 0 "
        "success, 2 bad input or usage (one line saying what, where and how to fix it; nothing "
        "is written), 1 an internal error.",
        "",
        *CONVENTIONS,
    ]
    ctx = click.Context(main, info_name="trialsim", terminal_width=HELP_WIDTH)
    out += ["## trialsim", "", "```text", main.get_help(ctx).rstrip(), "```", ""]
    for module, names in COMMANDS.items():
        del module
        for attr in names:
            cmd = next(c for c in main.commands.values() if c.callback.__name__ == attr)
            sub = click.Context(cmd, info_name=f"trialsim {cmd.name}", parent=None)
            sub.terminal_width = HELP_WIDTH
            sub.max_content_width = HELP_WIDTH
            out += [f"## trialsim {cmd.name}", "", "```text", cmd.get_help(sub).rstrip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


PAGES = {SCENARIO_PAGE: scenario_page, CLI_PAGE: cli_page}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, make in PAGES.items():
        text = make()
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            f"out of date: {', '.join(map(str, stale))}; run python scripts/gen_docs.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
