"""The planner's form fields: each edits one scenario key, and a changed value becomes one
``--set key=value`` override, exactly as on the command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trialsim.app.toml_write import value as toml_value


@dataclass(frozen=True)
class Field:
    """One input. ``key`` is the dotted scenario key; ``{outcome}`` stands for the primary
    outcome. ``kind``: ``num`` (a number), ``int``, ``choice`` (one of ``choices``) or ``toml``
    (any TOML value typed as text, e.g. a list ``[48, 44, 40]``)."""

    id: str
    key: str
    label: str
    panel: str
    kind: str = "num"
    choices: tuple[str, ...] = ()
    step: float | None = None

    def dotted(self, outcome: str) -> str:
        return self.key.format(outcome=outcome)


RANDOMISATION = ("individual", "cohort", "municipality", "stepped-wedge", "waitlist")

FIELDS: tuple[Field, ...] = (
    # design
    Field("randomisation", "design.randomisation", "Randomisation unit", "design", "choice",
          RANDOMISATION),
    Field("allocation_treated", "design.allocation_treated", "Share randomised to treatment",
          "design", step=0.05),
    Field("n_steps", "design.n_steps", "Stepped wedge: steps", "design", "int"),
    Field("participants", "sites.participants", "Participants per site (list)", "design", "toml"),
    Field("mean_size", "groups.mean_size", "Group size (mean participants)", "design", step=0.1),
    Field("cv_size", "groups.cv_size", "Group size CV", "design", step=0.05),
    Field("groups_per_trainer", "groups.groups_per_trainer", "Groups per trainer", "design",
          "int"),
    Field("sessions_offered", "design.sessions_offered", "Sessions offered", "design", "int"),
    Field("visit_months", "design.visit_months", "Visits (months, list)", "design", "toml"),
    # nature
    Field("icc_group", "groups.icc_group", "ICC between groups", "nature", step=0.01),
    Field("icc_trainer", "groups.icc_trainer", "ICC between trainers", "nature", step=0.01),
    Field("icc_municipality", "groups.icc_municipality", "ICC between sites", "nature",
          step=0.01),
    Field("effect", "outcomes.{outcome}.effect", "Effect at full attendance (outcome units)",
          "nature", "toml"),
    Field("sd", "outcomes.{outcome}.sd", "Outcome SD (outcome units)", "nature", step=0.5),
    Field("baseline_followup", "correlation.baseline_followup",
          "Baseline-follow-up correlation", "nature", step=0.05),
    Field("mean_fraction", "attendance.mean_fraction", "Attendance (mean share of sessions)",
          "nature", step=0.05),
    Field("dose_response", "attendance.dose_response", "Dose-response", "nature", "choice",
          ("none", "linear", "threshold", "saturating")),
    Field("completion_target", "dropout.completion_target", "Share measured at the last visit",
          "nature", step=0.01),
    Field("mechanism", "dropout.mechanism", "Dropout mechanism", "nature", "choice",
          ("MCAR", "MAR", "MNAR")),
    Field("assessor_unblinded_prob", "blinding.assessor_unblinded_prob",
          "P(assessor knows the arm)", "nature", step=0.05),
    Field("assessor_bias", "blinding.assessor_bias",
          "Unblinded assessor's bias (outcome units)", "nature", step=0.5),
)  # fmt: skip

BY_ID = {f.id: f for f in FIELDS}


def lookup(d: dict, dotted: str) -> Any:
    """The value at ``dotted`` in nested mappings, or None."""
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def plain(v: Any) -> Any:
    """Tuples as lists (the form of parsed TOML), recursively."""
    if isinstance(v, tuple | list):
        return [plain(x) for x in v]
    return v


def base_values(raw: dict, dumped: dict, outcome: str) -> dict[str, Any]:
    """Each field's value in the scenario: from the file where it says it, else the default
    the scenario model filled in; None when the key does not apply (e.g. no ``sd``)."""
    out = {}
    for f in FIELDS:
        k = f.dotted(outcome)
        v = lookup(raw, k)
        out[f.id] = plain(lookup(dumped, k) if v is None else v)
    return out


def display(f: Field, v: Any) -> Any:
    """The value as the form shows it."""
    if f.kind == "toml":
        return "" if v is None else toml_value(v)
    return v


def form_value(f: Field, shown: Any) -> tuple[Any, str | None]:
    """The scenario value of what the form holds, or an error (what, how to fix)."""
    from trialsim.scenario import parse_value

    if f.kind == "toml":
        text = (shown or "").strip()
        if not text:
            return None, "enter a value, e.g. [48, 44, 40] for a list"
        return plain(parse_value(text)), None
    if f.kind in ("num", "int"):
        if shown is None or shown == "":
            return None, "enter a number"
        if isinstance(shown, float) and shown.is_integer() and f.kind == "int":
            shown = int(shown)
        return shown, None
    return shown, None


def overrides(base: dict[str, Any], shown: dict[str, Any], outcome: str):
    """``(overrides, field_errors)``: a ``key=value`` for every field whose form value differs
    from the scenario's, and form-level errors by field id."""
    out, errors = [], {}
    for f in FIELDS:
        if base.get(f.id) is None or f.id not in shown:
            continue
        v, err = form_value(f, shown[f.id])
        if err is not None:
            errors[f.id] = f"{f.dotted(outcome)}: {err}"
            continue
        b = base[f.id]
        if isinstance(b, int | float) and isinstance(v, int | float) and not isinstance(b, bool):
            same = float(b) == float(v)
            if isinstance(b, int) and float(v).is_integer():
                v = int(v)
        else:
            same = v == b
        if not same:
            out.append(f"{f.dotted(outcome)}={toml_value(v)}")
    return out, errors


#: keys the form does not show whose errors come from a field that it does (a list of
#: participants per site must match the sites' names and referral rates)
_CAUSED_BY = {
    "sites.names": "participants",
    "sites.recruitment.referrals_per_month": "participants",
}


def field_of_message(message: str, outcome: str) -> str | None:
    """The field a one-line scenario error names (it starts with the dotted key)."""
    head = message.split(":", 1)[0].split(" ", 1)[0].strip()
    if head in _CAUSED_BY:
        return _CAUSED_BY[head]
    for f in FIELDS:
        if f.dotted(outcome) == head:
            return f.id
    return None
