"""Scenarios: a TOML file describing nature (ICCs, effects, dropout tendencies) and the design.

A scenario is parsed into frozen, validated pydantic models. Every problem is reported as a
:class:`ScenarioError` naming the file, the dotted key, the value and what is allowed. Variants
are made with :func:`apply_overrides` (``--set dotted.key=value``) or ``model_copy``.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trialsim.errors import UserError

DESIGNS = ("individual", "cohort", "municipality", "stepped-wedge", "waitlist")


#: The SFT scenario of this checkout (the default template where one is needed).
SFT_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "sft-19m.toml"


class ScenarioError(UserError):
    """A scenario that cannot be used; the message is one line a user can act on."""


def _allows_bool(annotation: Any) -> bool:
    """Whether a field's type admits a boolean (``link_trial: bool``); numbers do not."""
    if annotation is bool:
        return True
    return any(_allows_bool(a) for a in typing.get_args(annotation))


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, raw: Any) -> Any:
        """TOML ``true``/``false`` is not a number: refuse it for every non-boolean key."""
        if not isinstance(raw, dict):
            return raw
        for key, value in raw.items():
            field = cls.model_fields.get(key)
            if field is not None and _has_bool(value) and not _allows_bool(field.annotation):
                raise ValueError(
                    f"{key}: a boolean ({str(value).lower()}) where a number or text is expected"
                )
        return raw


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class Design(_Part):
    """Choices of the trial designer."""

    randomisation: Literal["individual", "cohort", "municipality", "stepped-wedge", "waitlist"]
    allocation_treated: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    n_steps: Annotated[int, Field(ge=1, le=50)] = 3
    contamination: Probability = 0.0
    sessions_offered: Annotated[int, Field(ge=1, le=500)] = 36
    visit_months: tuple[Annotated[float, Field(ge=0.0, le=240.0)], ...] = (0.0, 9.0, 15.0)
    # arm labels, the first is the reference (control); two or more
    arms: tuple[Annotated[str, Field(min_length=1)], ...] = ("control", "treatment")
    # share randomised to each arm (sums to 1); default: allocation_treated for two arms,
    # equal shares for more
    allocation: tuple[Annotated[float, Field(gt=0.0, lt=1.0)], ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _two_arm_allocation(cls, raw: Any) -> Any:
        """With two arms, ``allocation = [a0, a1]`` sets ``allocation_treated = a1`` (the two
        keys must agree when both are given)."""
        if not isinstance(raw, dict):
            return raw
        alloc, arms = raw.get("allocation"), raw.get("arms", ("control", "treatment"))
        if not (isinstance(alloc, list | tuple) and len(alloc) == 2 and len(arms) == 2):
            return raw
        if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in alloc):
            return raw
        given = raw.get("allocation_treated")
        if given is None:
            return {**raw, "allocation_treated": alloc[1]}
        if isinstance(given, int | float) and abs(given - alloc[1]) > 1e-9:
            raise ValueError(
                f"allocation {list(alloc)} disagrees with allocation_treated = {given}; "
                "give one of them"
            )
        return raw


class Recruitment(_Part):
    """Referral, screening, consent, group formation and loss before start.

    Rates are per month of calendar time from ``start_date``; hours are staff hours. See
    :mod:`trialsim.simulate.recruitment` for the process and ``scenarios/sft-19m.toml`` for
    sources.
    """

    start_date: datetime.date = datetime.date(2014, 9, 1)
    referrals_per_month: tuple[Annotated[float, Field(gt=0.0, le=1e6)], ...]
    referral_rate_cv: Annotated[float, Field(ge=0.0, le=3.0)] = 0.2
    ramp_up_months: Annotated[float, Field(ge=0.0, le=60.0)] = 3.0
    eligible_at_screening: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    eligible_at_assessment: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    consent_individual: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    consent_cluster: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    consent_waitlist: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    group_start_size: Annotated[int, Field(ge=1, le=100)] = 6
    cancel_below: Annotated[int, Field(ge=1, le=100)] = 3
    max_wait_months: Annotated[float, Field(gt=0.0, le=120.0)] = 8.0
    loss_per_month_waiting: Annotated[float, Field(ge=0.0, le=10.0)] = 0.03
    loss_prognosis_log_hazard: Annotated[float, Field(ge=-5.0, le=5.0)] = 0.3
    hours_per_referral: Annotated[float, Field(ge=0.0, le=1000.0)] = 1.5
    hours_per_assessment: Annotated[float, Field(ge=0.0, le=1000.0)] = 3.0
    hours_per_motivation_contact: Annotated[float, Field(ge=0.0, le=1000.0)] = 1.0
    hours_per_baseline: Annotated[float, Field(ge=0.0, le=1000.0)] = 2.0
    motivation_contacts_per_invitation: Annotated[float, Field(ge=0.0, le=100.0)] = 2.0
    motivation_contacts_per_month_waiting: Annotated[float, Field(ge=0.0, le=100.0)] = 1.0
    dropout_log_odds_per_month_waiting: Annotated[float, Field(ge=-5.0, le=5.0)] = 0.05
    link_trial: bool = False


class Sites(_Part):
    """Municipalities and how many participants each randomises."""

    participants: tuple[Annotated[int, Field(ge=1, le=100_000)], ...]
    names: tuple[str, ...] | None = None
    recruitment: Recruitment | None = None  # the recruitment process; None = not modelled

    @property
    def n_municipalities(self) -> int:
        return len(self.participants)


class ControlGroups(_Part):
    """Delivery groups in the control (reference) arm, e.g. an attention-control group
    course: its own group ICC and sessions; group sizes as in ``[groups]`` unless given."""

    icc_group: Probability = 0.05
    sessions_offered: Annotated[int, Field(ge=1, le=500)] | None = None
    mean_size: Annotated[float, Field(gt=1.0, le=100.0)] | None = None


class Groups(_Part):
    """Treatment groups, trainers and the variance components of clustering."""

    mean_size: Annotated[float, Field(gt=1.0, le=100.0)] = 6.3
    cv_size: Annotated[float, Field(ge=0.0, le=2.0)] = 0.25
    min_size: Annotated[int, Field(ge=1, le=100)] = 3
    max_size: Annotated[int, Field(ge=1, le=100)] = 10
    groups_per_trainer: Annotated[int, Field(ge=1, le=20)] = 2
    icc_group: Probability = 0.05
    icc_trainer: Probability = 0.0
    icc_municipality: Probability = 0.02
    control: ControlGroups | None = None  # [groups.control]: groups in the control arm too


class Attendance(_Part):
    """Sessions attended (beta-binomial) and the dose-response shape of the effect."""

    mean_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.6
    precision: Annotated[float, Field(gt=0.0, le=1e6)] = 3.0
    prognosis_log_odds: Annotated[float, Field(ge=-5.0, le=5.0)] = 0.5
    dose_response: Literal["none", "linear", "threshold", "saturating"] = "linear"
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    saturation_rate: Annotated[float, Field(gt=0.0, le=100.0)] = 3.0


class Correlation(_Part):
    """Within-person correlations of the latent outcome scores."""

    baseline_followup: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.6
    between_followups: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.75
    between_outcomes: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.4


class Dropout(_Part):
    """Monotone loss to follow-up, calibrated to a completion rate at the final visit."""

    mechanism: Literal["MCAR", "MAR", "MNAR"] = "MAR"
    completion_target: Annotated[float, Field(gt=0.0, le=1.0)] = 0.49
    treated_log_odds: Annotated[float, Field(ge=-5.0, le=5.0)] = 0.0
    baseline_log_odds: Annotated[float, Field(ge=-5.0, le=5.0)] = 0.3
    attendance_log_odds: Annotated[float, Field(ge=-10.0, le=10.0)] = 1.0
    outcome_log_odds: Annotated[float, Field(ge=-5.0, le=5.0)] = 0.5


class Blinding(_Part):
    """Limits of blinding: unblinded clinician-assessors score treated participants higher."""

    assessor_unblinded_prob: Fraction = 0.3
    assessor_bias: Annotated[float, Field(ge=-1e4, le=1e4)] = 2.0


#: outcome and covariate names: a letter, then letters, digits or underscores
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
#: columns of the trial-data table that outcome and covariate names must not take
RESERVED_NAMES = frozenset(
    (
        "rep", "participant", "municipality", "cohort", "cluster", "site", "arm", "group",
        "trainer", "period", "visit", "month", "sessions_offered", "sessions_attended",
        "assessor_blinded", "enrolled_month", "waiting_months", "visit_date", "treated",
    )
)  # fmt: skip

#: an effect per active arm: a number (two arms) or one value per non-reference arm
ArmEffect = float | tuple[float, ...]


def _effect_list(value: Any) -> Any:
    """A one-element effect list is the number itself (two arms)."""
    if isinstance(value, list | tuple) and len(value) == 1:
        return value[0]
    return value


class _Outcome(_Part):
    rater: Literal["clinician", "self", "register"] = "self"
    better: Literal["higher", "lower"] = "higher"
    effect_by_visit: tuple[Annotated[float, Field(ge=0.0, le=2.0)], ...] | None = None
    expectancy_bias: Annotated[float, Field(ge=-1e4, le=1e4)] = 0.0
    # minimal clinically important difference, outcome units (> 0; its sign follows `better`)
    mcid: Annotated[float, Field(gt=0.0)] | None = None


class BoundedOutcome(_Outcome):
    """A score on a bounded scale (rounded to ``step``; ``step = 0`` keeps it continuous).

    ``effect`` (outcome units at full dose) is a number, or with three or more arms a list
    with one value per non-reference arm."""

    type: Literal["bounded"]
    mean: float
    sd: Annotated[float, Field(gt=0.0)]
    lower: float
    upper: float
    step: Annotated[float, Field(ge=0.0)] = 1.0
    effect: ArmEffect = 0.0

    _one_effect = field_validator("effect", mode="before")(_effect_list)

    @model_validator(mode="after")
    def _bounds(self) -> BoundedOutcome:
        if not self.lower < self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
        return self


class ContinuousOutcome(_Outcome):
    """An unbounded continuous score: ``mean + sd z + effect``, neither rounded nor clipped.
    ``effect`` as for :class:`BoundedOutcome`."""

    type: Literal["continuous"]
    mean: float
    sd: Annotated[float, Field(gt=0.0)]
    effect: ArmEffect = 0.0

    _one_effect = field_validator("effect", mode="before")(_effect_list)


#: outcomes modelled on their own scale with a normal latent score (mean, sd, effect)
GAUSSIAN_OUTCOMES = (BoundedOutcome, ContinuousOutcome)

RateRatio = Annotated[float, Field(gt=0.0, le=100.0)]


class CountOutcome(_Outcome):
    """A count (Poisson-lognormal); the effect is a rate ratio at full dose (a number, or a
    list with one ratio per non-reference arm)."""

    type: Literal["count"]
    mean: Annotated[float, Field(gt=0.0)]
    sd_log: Annotated[float, Field(ge=0.0, le=5.0)] = 0.8
    rate_ratio: RateRatio | tuple[RateRatio, ...] = 1.0

    _one_effect = field_validator("rate_ratio", mode="before")(_effect_list)


class BinaryOutcome(_Outcome):
    """A yes/no outcome; the effect is an odds ratio at full dose (a number, or a list with
    one ratio per non-reference arm)."""

    type: Literal["binary"]
    prevalence: Annotated[float, Field(gt=0.0, lt=1.0)]
    odds_ratio: RateRatio | tuple[RateRatio, ...] = 1.0

    _one_effect = field_validator("odds_ratio", mode="before")(_effect_list)


class NumericCovariate(_Part):
    """A normal baseline covariate; ``effect`` in outcome latent SDs per covariate SD."""

    type: Literal["numeric"]
    mean: float = 0.0
    sd: Annotated[float, Field(gt=0.0)] = 1.0
    effect: Annotated[float, Field(ge=-10.0, le=10.0)] = 0.0


class CategoricalCovariate(_Part):
    """A categorical baseline covariate: ``levels`` drawn with ``probs``; ``effects`` in
    outcome latent SDs, one per level (the first level's is usually 0)."""

    type: Literal["categorical"]
    levels: tuple[Annotated[str, Field(min_length=1)], ...]
    probs: tuple[Annotated[float, Field(gt=0.0, le=1.0)], ...]
    effects: tuple[Annotated[float, Field(ge=-10.0, le=10.0)], ...] | None = None


Covariate = Annotated[NumericCovariate | CategoricalCovariate, Field(discriminator="type")]
Outcome = Annotated[
    BoundedOutcome | ContinuousOutcome | CountOutcome | BinaryOutcome,
    Field(discriminator="type"),
]
DesignPrior = Annotated[
    str, Field(pattern=r"^[a-z]+:\s*[-+0-9.eE]+(\s*,\s*[-+0-9.eE]+)*$")
]  # "family:p1,p2", e.g. "normal:4,2" or "beta:2,30"


class AnalysisPriors(_Part):
    """Optional ``[analysis]`` part: the priors of the Bayesian analyses (trialsim.bayes)."""

    prior: Annotated[
        str,
        Field(pattern=r"^(weakly-informative|sceptical|enthusiastic|flat|normal:[^,]+,[^,]+)$"),
    ] = "weakly-informative"
    sceptical_tail: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    group_sd_prior: (
        Annotated[str, Field(pattern=r"^(half-normal|half-t):[-+0-9.eE, ]+$")] | None
    ) = None  # default half-normal with scale = half the outcome SD
    rope: tuple[float, float] | None = None

    @field_validator("prior")
    @classmethod
    def _parse_prior(cls, value: str) -> str:
        if value.startswith("normal:"):
            numbers = _numbers(value.removeprefix("normal:"), 2, value)
            if not numbers[1] > 0:
                raise ValueError(f"prior {value!r}: the SD must be positive, e.g. normal:0,5")
        return value

    @field_validator("group_sd_prior")
    @classmethod
    def _parse_group_sd_prior(cls, value: str | None) -> str | None:
        if value is None:
            return value
        family, _, rest = value.partition(":")
        numbers = _numbers(rest, 1 if family == "half-normal" else 2, value)
        if not all(v > 0 for v in numbers):
            raise ValueError(f"group_sd_prior {value!r}: scale (and df) must be positive")
        return value

    @model_validator(mode="after")
    def _rope_order(self) -> AnalysisPriors:
        if self.rope is not None and not self.rope[0] < self.rope[1]:
            raise ValueError(f"rope: {list(self.rope)} needs [low, high] with low < high")
        return self


def _numbers(text: str, count: int, spec: str) -> tuple[float, ...]:
    """``count`` finite comma-separated numbers of a prior string, else a ValueError."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{spec!r}: expected {count} finite number(s) after the colon")
    return values


def _design_prior(value: str) -> str:
    """A design prior string parsed now (family, parameter count and ranges)."""
    from trialsim.bayes.distributions import parse_design_prior

    parse_design_prior(value)
    return value


class Scenario(_Part):
    """A complete scenario; see ``scenarios/sft-19m.toml`` for every key with units."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    design: Design
    sites: Sites
    groups: Groups = Groups()
    attendance: Attendance = Attendance()
    correlation: Correlation = Correlation()
    dropout: Dropout = Dropout()
    blinding: Blinding = Blinding()
    outcomes: dict[str, Outcome]
    primary_outcome: str | None = None
    analysis: AnalysisPriors | None = None  # priors for Bayesian analyses (trialsim.bayes)
    # Beliefs about nature for Bayesian design (assurance), in the ``--design-prior`` format
    # "family:params", e.g. effect = "normal:4,2", icc = "beta:2,30" (`trialsim calibrate`).
    design_priors: dict[str, DesignPrior] = {}
    covariates: dict[str, Covariate] = {}  # baseline covariates ([covariates.NAME])

    @field_validator("design_priors")
    @classmethod
    def _parse_design_priors(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            try:
                _design_prior(text)
            except ValueError as exc:
                raise ValueError(f"design_priors.{key}: {exc}") from None
        return value

    @property
    def primary(self) -> str:
        return self.primary_outcome or next(iter(self.outcomes))

    @property
    def n_visits(self) -> int:
        return len(self.design.visit_months)

    @property
    def n_participants(self) -> int:
        return sum(self.sites.participants)

    @property
    def arm_labels(self) -> tuple[str, ...]:
        return self.design.arms

    @property
    def arm_allocation(self) -> tuple[float, ...]:
        d = self.design
        if d.allocation is not None:
            return d.allocation
        k = len(d.arms)
        if k == 2:
            return (1.0 - d.allocation_treated, d.allocation_treated)
        return tuple(1.0 / k for _ in range(k))

    @property
    def arm_has_groups(self) -> tuple[bool, ...]:
        """Which arms are treated in delivery groups: every active arm; the reference arm
        when ``[groups.control]`` declares attention-control groups."""
        return (self.groups.control is not None, *(True for _ in self.design.arms[1:]))

    @property
    def n_arms(self) -> int:
        return len(self.design.arms)

    def arm_effects(self, outcome: str) -> tuple[float, ...]:
        """The full-dose effect of each non-reference arm on ``outcome``, on the outcome's
        effect scale: outcome units (bounded, continuous), rate ratio (count) or odds ratio
        (binary). A single number applies to every active arm."""
        o = self.outcomes[outcome]
        value = {"count": "rate_ratio", "binary": "odds_ratio"}.get(o.type, "effect")
        effect = getattr(o, value)
        if isinstance(effect, tuple):
            return tuple(float(e) for e in effect)
        return tuple(float(effect) for _ in self.design.arms[1:])

    @property
    def structure(self):
        """The :class:`~trialsim.structure.TrialStructure` of this scenario's trials."""
        from trialsim.structure import structure_from_scenario

        return structure_from_scenario(self)

    def digest(self) -> str:
        """SHA-256 of the validated scenario (provenance in outputs)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def with_outcomes(self, names: list[str] | tuple[str, ...]) -> Scenario:
        """The same scenario simulating only the named outcomes."""
        unknown = [n for n in names if n not in self.outcomes]
        if unknown:
            raise ScenarioError(f"unknown outcome(s) {unknown}; choose from {list(self.outcomes)}")
        primary = self.primary if self.primary in names else names[0]
        return self.model_copy(
            update={"outcomes": {n: self.outcomes[n] for n in names}, "primary_outcome": primary}
        )


# ---------------------------------------------------------------------------------------------
# Loading, overrides and the consistency checks pydantic's per-field ranges cannot express.


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, override (``dotted.key=value``) and validate a scenario file.

    Raises :class:`ScenarioError` with one line naming file, key, value and what is allowed.
    """
    path = Path(path)
    raw = apply_overrides(read_scenario_raw(path), overrides, source=str(path))
    return scenario_from_dict(raw, source=str(path))


#: deepest nesting of arrays / inline tables a scenario file may have (it needs 2)
MAX_NESTING = 50


def _bracket_depth(text: str) -> int:
    """Deepest nesting of ``[`` / ``{`` outside strings and comments (checked before parsing,
    so a hostile file cannot exhaust the parser's recursion)."""
    depth = deepest = 0
    quote = None
    comment = False
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif quote is not None:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def read_scenario_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Parse a scenario file; ``base = "other.toml"`` (relative to the file) makes it a variant:
    its tables are merged key by key over the base scenario's."""
    if seen and not path.is_file():
        raise ScenarioError(
            f"{seen[-1]}: base = {path.name!r}: no such scenario file beside it ({path})"
        )
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file (see the files in scenarios/)")
    if path.resolve() in seen:
        chain = " -> ".join(p.name for p in (*seen, path.resolve()))
        raise ScenarioError(f"{seen[-1]}: 'base' refers back to itself ({chain}); remove the cycle")
    if len(seen) >= 20:
        raise ScenarioError(f"{path}: more than 20 levels of 'base'; flatten the chain")
    try:
        text = path.read_text(encoding="utf-8")
        if _bracket_depth(text) > MAX_NESTING:  # whatever the interpreter's recursion limit
            raise RecursionError
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise ScenarioError(f"base = {base!r} ({path}): give the base scenario's file name")
    return _merged(read_scenario_raw(path.parent / base, (*seen, path.resolve())), raw)


def _merged(base: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in variant.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def scenario_from_dict(raw: dict[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario mapping (see :func:`load_scenario`)."""
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_first_error(exc, source)) from None
    for key, message in _inconsistencies(scenario):
        raise ScenarioError(f"{key} {message} ({source})")
    return scenario


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...], *, source: str = "--set"
) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``dotted.key=value`` applied (value parsed as TOML)."""
    import copy

    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScenarioError(
                f"--set {item!r}: expected dotted.key=value, e.g. groups.icc_group=0.1"
            )
        value = parse_value(text.strip())
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ScenarioError(f"--set {key}: {where} is a value, not a table ({source})")
            node = child
        node[parts[-1]] = value
    return raw


def parse_value(text: str) -> Any:
    """Parse a command-line value as TOML (numbers, booleans, arrays), else keep the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_TAGS = ("bounded", "continuous", "count", "binary", "numeric", "categorical")


def _first_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    # drop pydantic's discriminator tag (e.g. outcomes.psp.bounded.sd -> outcomes.psp.sd)
    if len(loc) >= 3 and loc[0] in ("outcomes", "covariates") and loc[2] in _TAGS:
        del loc[2]
    # and the union member tried for an effect (outcomes.x.effect.float -> outcomes.x.effect)
    if loc and loc[-1] in ("float", "tuple[float, ...]") or loc[-1:] == ["function-after"]:
        del loc[-1]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key ({source}); check the spelling against scenarios/sft-19m.toml"
    if kind == "missing":
        return f"{key}: required key is missing ({source})"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    inner = re.match(r"^([A-Za-z_][\w.]*): (.*)$", msg)
    if inner and isinstance(got, dict) and inner.group(1).split(".")[0] in got:
        key, msg = f"{key}.{inner.group(1)}", inner.group(2)
    elif inner and inner.group(1).startswith(f"{key}."):
        key, msg = inner.group(1), inner.group(2)
    if kind == "string_pattern_mismatch":
        msg = "not of the form " + _PATTERN_HINTS.get(loc[0] if loc else "", "expected")
        if loc and loc[-1] in _PATTERN_HINTS:
            msg = "not of the form " + _PATTERN_HINTS[loc[-1]]
    got_text = "" if isinstance(got, dict) else f", got {got!r}"
    return f"{key}: {msg}{got_text} ({source})"


_PATTERN_HINTS = {
    "design_priors": "family:params, e.g. normal:4,2 or beta:2,30",
    "prior": "weakly-informative, sceptical, enthusiastic, flat or normal:MEAN,SD",
    "group_sd_prior": "half-normal:SCALE or half-t:NU,SCALE",
    "name": "letters, digits, '_', '.' and '-'",
}


def _inconsistencies(s: Scenario):
    """Yield (key, message) for combinations of values that cannot be simulated."""
    d, g = s.design, s.groups
    m = s.sites.n_municipalities
    if g.min_size > g.max_size:
        yield "groups.min_size", f"({g.min_size}) must not exceed groups.max_size ({g.max_size})"
    if not g.min_size <= g.mean_size <= g.max_size:
        yield "groups.mean_size", f"({g.mean_size}) must lie in [min_size, max_size]"
    if g.icc_group + g.icc_trainer >= 1:
        yield "groups.icc_group", "+ groups.icc_trainer must be below 1"
    if not d.visit_months or d.visit_months[0] != 0 or len(d.visit_months) < 2:
        yield (
            "design.visit_months",
            f"must start with 0 (baseline) and have a follow-up, got {list(d.visit_months)}",
        )
        return
    if list(d.visit_months) != sorted(set(d.visit_months)):
        yield "design.visit_months", f"must increase, got {list(d.visit_months)}"
        return
    if not s.sites.participants:
        yield "sites.participants", "needs at least one municipality, got []"
        return
    yield from _size_limits(s)
    yield from _outcome_ranges(s)
    yield from _arm_inconsistencies(s)
    if s.sites.names is not None and len(s.sites.names) != m:
        yield "sites.names", f"has {len(s.sites.names)} names for {m} municipalities"
    if d.randomisation == "municipality":
        n_treated = round(m * d.allocation_treated)
        if min(n_treated, m - n_treated) < 2:
            yield (
                "design.randomisation",
                (
                    f"= 'municipality' needs at least 2 clusters per arm; {m} municipalities with "
                    f"allocation {d.allocation_treated} give {n_treated} vs {m - n_treated}"
                ),
            )
    if d.randomisation == "stepped-wedge" and d.n_steps > m:
        yield "design.n_steps", f"({d.n_steps}) cannot exceed the number of municipalities ({m})"
    if s.primary_outcome is not None and s.primary_outcome not in s.outcomes:
        yield "primary_outcome", f"{s.primary_outcome!r} is not among outcomes {list(s.outcomes)}"
    if not s.outcomes:
        yield "outcomes", "must define at least one outcome"
    for name, o in s.outcomes.items():
        yield from _name_problems("outcomes", name)
        yield from _effect_problems(s, name, o)
        if o.effect_by_visit is not None and (
            len(o.effect_by_visit) != s.n_visits or not o.effect_by_visit or o.effect_by_visit[0]
        ):
            yield (
                f"outcomes.{name}.effect_by_visit",
                (f"needs {s.n_visits} shares (one per visit) starting with 0 at baseline"),
            )
        if isinstance(o, BoundedOutcome) and not o.lower <= o.mean <= o.upper:
            yield (
                f"outcomes.{name}.mean",
                f"({o.mean}) must lie in [lower, upper] = [{o.lower}, {o.upper}]",
            )
    c = s.correlation
    visit_corr = visit_correlation(s.n_visits, c.baseline_followup, c.between_followups)
    if np.linalg.eigvalsh(visit_corr).min() <= 1e-10:
        yield (
            "correlation.between_followups",
            (
                f"({c.between_followups}) with baseline_followup {c.baseline_followup} is not a "
                "valid "
                f"correlation structure; raise it to at least {2 * c.baseline_followup**2 - 1:.2f}"
            ),
        )
    k = len(s.outcomes)
    if k > 1 and c.between_outcomes <= -1 / (k - 1):
        yield "correlation.between_outcomes", f"must exceed {-1 / (k - 1):.3f} for {k} outcomes"
    yield from _covariate_inconsistencies(s)
    yield from _group_feasibility(s)
    yield from _recruitment_inconsistencies(s)


#: the largest trial a scenario may describe (participants over all sites, sites)
MAX_PARTICIPANTS = 1_000_000
MAX_SITES = 10_000
#: largest magnitude of any location, scale or bound (outcome units)
MAX_MAGNITUDE = 1e9
#: an effect or MCID of a continuous outcome may be at most this many SDs
MAX_EFFECT_SDS = 50.0


def _size_limits(s: Scenario):
    m, n = s.sites.n_municipalities, s.n_participants
    if m > MAX_SITES:
        yield "sites.participants", f"has {m:,} municipalities; at most {MAX_SITES:,} are supported"
    elif n > MAX_PARTICIPANTS:
        yield (
            "sites.participants",
            f"add up to {n:,} participants; at most {MAX_PARTICIPANTS:,} are supported",
        )


def _outcome_ranges(s: Scenario):
    """Physically sensible magnitudes: effects, SDs, MCIDs and steps against the scale."""
    for name, o in s.outcomes.items():
        key = f"outcomes.{name}"
        if isinstance(o, BoundedOutcome):
            width = o.upper - o.lower
            for field in ("mean", "lower", "upper"):
                value = getattr(o, field)
                if abs(value) > MAX_MAGNITUDE:
                    yield f"{key}.{field}", f"({value:g}) must lie within +-{MAX_MAGNITUDE:g}"
                    return
            checks = (
                ("sd", o.sd, width, "the scale's width upper - lower"),
                ("step", o.step, width / 2, "half the scale's width (upper - lower) / 2"),
                ("mcid", o.mcid, width, "the scale's width upper - lower"),
                ("expectancy_bias", abs(o.expectancy_bias), width, "the scale's width"),
                *(("effect", abs(e), width, "the scale's width upper - lower")
                  for e in _as_tuple(o.effect)),
            )  # fmt: skip
        elif isinstance(o, ContinuousOutcome):
            limit = MAX_EFFECT_SDS * o.sd
            checks = (
                ("mean", abs(o.mean), MAX_MAGNITUDE, f"{MAX_MAGNITUDE:g}"),
                ("sd", o.sd, MAX_MAGNITUDE, f"{MAX_MAGNITUDE:g}"),
                ("mcid", o.mcid, limit, f"{MAX_EFFECT_SDS:g} SDs"),
                ("expectancy_bias", abs(o.expectancy_bias), limit, f"{MAX_EFFECT_SDS:g} SDs"),
                *(("effect", abs(e), limit, f"{MAX_EFFECT_SDS:g} SDs")
                  for e in _as_tuple(o.effect)),
            )  # fmt: skip
        elif isinstance(o, CountOutcome):
            checks = (
                ("mean", o.mean, 1e6, "1e6 events"),
                ("mcid", o.mcid, 1e6, "1e6"),
            )
        else:
            checks = (("mcid", o.mcid, 1.0, "1 (a difference in proportions)"),)
        for field, value, limit, what in checks:
            if value is not None and value > limit:
                yield f"{key}.{field}", f"({value:g}) must not exceed {what} ({limit:g})"
                break
    for name, c in s.covariates.items():
        if c.type == "numeric" and max(abs(c.mean), c.sd) > MAX_MAGNITUDE:
            yield f"covariates.{name}", f"mean and sd must lie within +-{MAX_MAGNITUDE:g}"


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


#: randomisation units that support three or more arms and groups in the control arm
MULTI_ARM_RANDOMISATIONS = ("individual", "waitlist")


def _arm_inconsistencies(s: Scenario):
    d = s.design
    k = len(d.arms)
    if k < 2 or len(set(d.arms)) != k:
        yield "design.arms", f"needs at least 2 distinct arm labels, got {list(d.arms)}"
        return
    if d.allocation is not None:
        if len(d.allocation) != k:
            yield (
                "design.allocation",
                f"needs one share per arm ({k}: {', '.join(d.arms)}), got {list(d.allocation)}",
            )
        elif abs(sum(d.allocation) - 1.0) > 1e-9:
            yield (
                "design.allocation",
                f"shares must sum to 1, got {list(d.allocation)} (sum {sum(d.allocation):.12g})",
            )
    supported = ", ".join(MULTI_ARM_RANDOMISATIONS)
    if k > 2 and d.randomisation not in MULTI_ARM_RANDOMISATIONS:
        yield (
            "design.arms",
            f"{k} arms are supported for {supported} randomisation only, got "
            f"randomisation = {d.randomisation!r}",
        )
    if s.groups.control is not None and d.randomisation not in MULTI_ARM_RANDOMISATIONS:
        yield (
            "groups.control",
            f"groups in the control arm are supported for {supported} randomisation only, got "
            f"randomisation = {d.randomisation!r}",
        )
    r = s.sites.recruitment
    if r is not None and r.link_trial and (k > 2 or s.groups.control is not None):
        yield (
            "sites.recruitment.link_trial",
            "= true supports two arms without control groups only; set it to false",
        )


def _name_problems(table: str, name: str):
    import re

    if not re.fullmatch(NAME_PATTERN, name):
        yield (
            f"{table}.{name}",
            "name must start with a letter and hold only letters, digits and underscores, "
            f"got {name!r}",
        )
    elif name in RESERVED_NAMES:
        yield f"{table}.{name}", f"name is a column of the trial data table, got {name!r}"


def _effect_problems(s: Scenario, name: str, o):
    key = {"count": "rate_ratio", "binary": "odds_ratio"}.get(o.type, "effect")
    effect = getattr(o, key)
    n_active = len(s.design.arms) - 1
    if isinstance(effect, tuple) and len(effect) != n_active:
        yield (
            f"outcomes.{name}.{key}",
            f"needs a number or one value per non-reference arm ({n_active}: "
            f"{', '.join(s.design.arms[1:])}), got {list(effect)}",
        )


def _covariate_inconsistencies(s: Scenario):
    for name, c in s.covariates.items():
        yield from _name_problems("covariates", name)
        if name in s.outcomes:
            yield f"covariates.{name}", f"name is also an outcome, got {name!r}"
        if c.type != "categorical":
            continue
        if len(c.levels) < 2 or len(set(c.levels)) != len(c.levels):
            yield (
                f"covariates.{name}.levels",
                f"needs 2 or more distinct levels, got {list(c.levels)}",
            )
        elif len(c.probs) != len(c.levels):
            yield (
                f"covariates.{name}.probs",
                f"needs one probability per level ({len(c.levels)}), got {list(c.probs)}",
            )
        elif abs(sum(c.probs) - 1.0) > 1e-9:
            yield f"covariates.{name}.probs", f"must sum to 1, got {list(c.probs)}"
        elif c.effects is not None and len(c.effects) != len(c.levels):
            yield (
                f"covariates.{name}.effects",
                f"needs one effect per level ({len(c.levels)}), got {list(c.effects)}",
            )


def _recruitment_inconsistencies(s: Scenario):
    r, m = s.sites.recruitment, s.sites.n_municipalities
    if r is None:
        return
    if len(r.referrals_per_month) not in (1, m):
        yield (
            "sites.recruitment.referrals_per_month",
            f"has {len(r.referrals_per_month)} rates for {m} municipalities; give 1 or {m}",
        )
    if r.cancel_below > r.group_start_size:
        yield (
            "sites.recruitment.cancel_below",
            f"({r.cancel_below}) must not exceed group_start_size ({r.group_start_size})",
        )
    if r.group_start_size > s.groups.max_size:
        yield (
            "sites.recruitment.group_start_size",
            f"({r.group_start_size}) must not exceed groups.max_size ({s.groups.max_size})",
        )


def _group_feasibility(s: Scenario):
    """Every cell of an arm with groups must split into groups within [min_size, max_size]."""
    g = s.groups
    for arm, cells in arm_cell_sizes(s).items():
        mean_size = group_mean_size(s, arm)
        who = "treated" if arm > 0 else "control"
        if s.n_arms > 2:
            who = f"{s.design.arms[arm]}-arm"
        for i, n_cell in enumerate(cells):
            n_groups = groups_in_cell(n_cell, mean_size)
            if not n_groups * g.min_size <= n_cell <= n_groups * g.max_size:
                yield (
                    "groups.min_size",
                    (
                        f"/ max_size [{g.min_size}, {g.max_size}] cannot hold {n_cell} {who} "
                        f"participants of municipality {i + 1} in {n_groups} groups; widen the "
                        "bounds or change mean_size"
                    ),
                )
                return


def group_mean_size(s: Scenario, arm: int) -> float:
    """Mean group size of an arm: ``[groups.control] mean_size`` for the reference arm when
    given, else ``groups.mean_size``."""
    c = s.groups.control
    if arm == 0 and c is not None and c.mean_size is not None:
        return c.mean_size
    return s.groups.mean_size


def arm_counts(n: int | np.ndarray, shares) -> np.ndarray:
    """Participants of each arm among ``n`` randomised in a stratum, (..., k): arm j > 0 gets
    ``floor(n S_j + 1/2) - floor(n S_(j-1) + 1/2)`` with ``S_j`` the cumulative share of arms
    1..j, the reference arm the rest (two arms: ``floor(n a + 1/2)`` treated)."""
    n = np.asarray(n)
    cum = np.cumsum(np.asarray(shares, dtype=float)[1:])
    upto = np.floor(n[..., None] * cum + 0.5).astype(int)
    upto = np.minimum(upto, n[..., None])
    active = np.diff(upto, axis=-1, prepend=0)
    return np.concatenate([n[..., None] - upto[..., -1:], active], axis=-1)


def arm_cell_sizes(s: Scenario) -> dict[int, list[int]]:
    """Arm code -> the largest number of its participants in each municipality that must
    form groups, for every arm with groups (see :func:`treated_cell_sizes`)."""
    d = s.design
    if d.randomisation not in ("individual", "waitlist"):
        return {1: treated_cell_sizes(s)}
    counts = arm_counts(np.asarray(s.sites.participants), s.arm_allocation)
    return {
        a: [int(c) for c in counts[:, a]] for a, grouped in enumerate(s.arm_has_groups) if grouped
    }


def groups_in_cell(n_treated: int | np.ndarray, mean_size: float):
    """Number of groups formed from ``n_treated`` participants: nearest to n / mean_size, >= 1."""
    return np.maximum(1, np.floor(np.asarray(n_treated) / mean_size + 0.5)).astype(int)


def treated_cell_sizes(s: Scenario) -> list[int]:
    """Largest number of treated participants of each municipality that must form groups."""
    d = s.design
    sizes = []
    for n in s.sites.participants:
        if d.randomisation in ("individual", "waitlist"):
            sizes.append(int(math.floor(n * d.allocation_treated + 0.5)))
        elif d.randomisation == "stepped-wedge":
            sizes.append(int(math.ceil(n / (d.n_steps + 1))))
        else:  # municipality (all treated when it is) or cohort (every cohort is a group)
            sizes.append(n)
    return sizes


def visit_correlation(n_visits: int, baseline_followup: float, between_followups: float):
    """Visit correlation matrix: baseline vs any follow-up, and among follow-ups."""
    r = np.full((n_visits, n_visits), between_followups)
    r[0, :] = r[:, 0] = baseline_followup
    np.fill_diagonal(r, 1.0)
    return r


def outcome_correlation(n_outcomes: int, between_outcomes: float):
    """Exchangeable correlation between outcomes."""
    r = np.full((n_outcomes, n_outcomes), between_outcomes)
    np.fill_diagonal(r, 1.0)
    return r
