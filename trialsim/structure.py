"""The trial structure: what a trial *is*, from which every default is derived in one place.

A :class:`TrialStructure` says which arms there are (the first is the reference), what was
randomised (people, or clusters such as municipalities, schools or cohorts), within which
strata, which arms deliver the intervention in groups, whether groups sit inside randomised
clusters, whether there are periods (stepped wedge), which visits at which months, and which
outcomes (with type, scale bounds where declared, direction of benefit and MCID) and
covariates the data hold. It is built from a scenario (:func:`structure_from_scenario`) or from
a data file plus what the user declares (:mod:`trialsim.io.structure`).

Nothing downstream branches on a design *name*: design matrices, the default analysis
(:func:`trialsim.analyse.registry.default_analysis`), checks and reports read this object.
:attr:`TrialStructure.label` is a derived name for people, not a switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from trialsim.errors import UserError

OutcomeType = Literal["continuous", "bounded", "count", "binary"]
OUTCOME_TYPES: tuple[str, ...] = ("continuous", "bounded", "count", "binary")


@dataclass(frozen=True)
class OutcomeSpec:
    """One outcome: its name, type, scale and direction of benefit.

    ``lower``/``upper`` are the scale's bounds where declared (values outside are errors);
    ``better`` is ``None`` when nobody said which direction is a benefit (commands that need
    it then ask for ``--better``). ``known_from`` records where the type came from
    (``scenario``, ``option`` or ``inferred``) so it can be printed with every result.
    """

    name: str
    type: OutcomeType = "continuous"
    lower: float | None = None
    upper: float | None = None
    better: Literal["higher", "lower"] | None = None
    mcid: float | None = None
    known_from: str = "declared"

    @property
    def gaussian(self) -> bool:
        """True for outcomes modelled on their own scale with normal residuals."""
        return self.type in ("continuous", "bounded")

    def describe(self) -> str:
        bounds = ""
        if self.lower is not None or self.upper is not None:
            lo = "-inf" if self.lower is None else f"{self.lower:g}"
            hi = "inf" if self.upper is None else f"{self.upper:g}"
            bounds = f" [{lo}, {hi}]"
        better = f", {self.better} is better" if self.better else ", direction not declared"
        mcid = f", MCID {self.mcid:g}" if self.mcid is not None else ""
        return f"{self.name}: {self.type}{bounds}{better}{mcid} ({self.known_from})"


@dataclass(frozen=True)
class CovariateSpec:
    """A baseline covariate: numeric, or categorical with its levels (the first is the
    reference level of R's treatment contrasts)."""

    name: str
    kind: Literal["numeric", "categorical"] = "numeric"
    levels: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "numeric":
            return f"{self.name}: numeric"
        return f"{self.name}: categorical, levels {', '.join(self.levels)}"


@dataclass(frozen=True)
class TrialStructure:
    """What was randomised, how people are grouped, what is measured (see module docstring).

    Parameters
    ----------
    arms : arm labels; ``arms[0]`` is the reference arm (control).
    allocation : share of participants (or clusters) in each arm, in the order of ``arms``.
    site : name of the sites column (e.g. ``"municipality"``, ``"school"``), ``None`` when
        the data have no sites.
    stratified : randomisation was within sites: sites are strata, adjusted for as fixed
        effects.
    cluster : name of the randomised cluster (e.g. ``"municipality"``, ``"cohort"``,
        ``"class"``) when clusters, not people, were randomised; ``None`` for people. It may
        be the site itself (a municipality-randomised trial).
    group_arms : arms whose participants are treated in delivery groups (empty: none).
    group_variance : ``"common"`` (one group variance, lme4 ``(1 | group)``) or
        ``"by-arm"`` (a variance per arm with groups; the partially nested model when only
        one arm has groups).
    groups_are_clusters : each randomised cluster is one delivery group (cohort designs).
    n_periods : periods of a stepped wedge (1: none).
    trainers : the data say which trainer ran each group.
    visit_months : months of each visit from randomisation; visit 0 is the baseline when
        ``baseline`` is true.
    outcomes : name -> :class:`OutcomeSpec`.
    covariates : name -> :class:`CovariateSpec` (adjusted for by the default analyses).
    primary_outcome : the pre-specified primary outcome, when known (a scenario says it).
    label : a name for people (``individual``, ``cohort``, ``municipality``,
        ``stepped-wedge``, ``waitlist``, ...); derived or given by the scenario, never used
        to choose a behaviour.
    """

    arms: tuple[str, ...] = ("control", "treatment")
    allocation: tuple[float, ...] = (0.5, 0.5)
    site: str | None = "municipality"
    stratified: bool = True
    cluster: str | None = None
    group_arms: tuple[str, ...] = ("treatment",)
    group_variance: Literal["common", "by-arm"] = "common"
    groups_are_clusters: bool = False
    n_periods: int = 1
    trainers: bool = False
    visit_months: tuple[float, ...] = (0.0, 1.0)
    baseline: bool = True
    outcomes: dict[str, OutcomeSpec] = field(default_factory=dict)
    covariates: dict[str, CovariateSpec] = field(default_factory=dict)
    label: str = "individual"
    primary_outcome: str | None = None

    def __post_init__(self):
        if len(self.arms) < 2:
            raise UserError(f"a trial needs at least two arms, got {list(self.arms)}")
        if len(set(self.arms)) != len(self.arms):
            raise UserError(f"arm labels must differ, got {list(self.arms)}")
        if len(self.allocation) != len(self.arms):
            raise UserError(
                f"allocation has {len(self.allocation)} shares for {len(self.arms)} arms"
            )
        unknown = [a for a in self.group_arms if a not in self.arms]
        if unknown:
            raise UserError(f"groups in unknown arm(s) {unknown}; arms are {list(self.arms)}")

    # -- derived facts -------------------------------------------------------------------

    @property
    def reference(self) -> str:
        return self.arms[0]

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    @property
    def contrasts(self) -> tuple[str, ...]:
        """The arms compared with the reference, in order."""
        return self.arms[1:]

    @property
    def cluster_randomised(self) -> bool:
        return self.cluster is not None

    @property
    def cluster_is_site(self) -> bool:
        return self.cluster is not None and self.cluster == self.site

    @property
    def has_groups(self) -> bool:
        return bool(self.group_arms)

    @property
    def partially_nested(self) -> bool:
        """Groups in some arms but not all (e.g. treated arm only)."""
        return 0 < len(self.group_arms) < self.n_arms

    @property
    def has_baseline(self) -> bool:
        return self.baseline and len(self.visit_months) > 1

    @property
    def groups_description(self) -> str:
        if not self.group_arms:
            return "none"
        if not self.partially_nested:
            kind = "common variance" if self.group_variance == "common" else "variance by arm"
            return f"in every arm ({kind})"
        return f"in {', '.join(self.group_arms)} only (partially nested)"

    def describe(self) -> list[str]:
        """Lines saying what this trial is, as `trialsim validate` prints them."""
        alloc = " / ".join(f"{a:.0%}" for a in self.allocation)
        arms = ", ".join(f"{a} (reference)" if i == 0 else a for i, a in enumerate(self.arms))
        unit = (
            f"clusters ({self.cluster})"
            + (", each one delivery group" if self.groups_are_clusters else "")
            if self.cluster_randomised
            else "people"
        )
        lines = [
            f"design: {self.label}",
            f"arms: {arms}; allocation {alloc}",
            f"randomised: {unit}"
            + (f", stratified by {self.site}" if self.stratified and self.site else ""),
            f"delivery groups: {self.groups_description}"
            + (", trainers recorded" if self.trainers else ""),
        ]
        if self.n_periods > 1:
            lines.append(f"periods: {self.n_periods} (stepped wedge)")
        months = ", ".join(f"{m:g}" for m in self.visit_months)
        kind = "baseline then follow-ups" if self.has_baseline else "no baseline (post-test only)"
        lines.append(f"visits (months): {months}; {kind}")
        lines += [f"outcome {o.describe()}" for o in self.outcomes.values()]
        lines += [f"covariate {c.describe()}" for c in self.covariates.values()]
        return lines

    def outcome(self, name: str) -> OutcomeSpec:
        try:
            return self.outcomes[name]
        except KeyError:
            raise UserError(
                f"unknown outcome {name!r}; the data have {', '.join(self.outcomes) or 'none'}"
            ) from None

    def with_outcome(self, spec: OutcomeSpec) -> TrialStructure:
        return replace(self, outcomes={**self.outcomes, spec.name: spec})


def structure_from_scenario(s) -> TrialStructure:
    """The structure a scenario's simulated trials have (see :mod:`trialsim.scenario`)."""
    d = s.design
    arms = s.arm_labels
    cluster, groups_are_clusters = None, False
    if d.randomisation in ("municipality", "stepped-wedge"):
        cluster = "municipality"
    elif d.randomisation == "cohort":
        cluster, groups_are_clusters = "cohort", True
    group_arms = tuple(a for a, grouped in zip(arms, s.arm_has_groups, strict=True) if grouped)
    outcomes = {name: _outcome_spec(name, o) for name, o in s.outcomes.items()}
    covariates = {
        name: CovariateSpec(name, c.type, tuple(c.levels) if c.type == "categorical" else ())
        for name, c in s.covariates.items()
    }
    return TrialStructure(
        arms=arms,
        allocation=s.arm_allocation,
        site="municipality",
        stratified=cluster != "municipality",
        cluster=cluster,
        group_arms=group_arms,
        group_variance="by-arm",
        groups_are_clusters=groups_are_clusters,
        n_periods=d.n_steps + 1 if d.randomisation == "stepped-wedge" else 1,
        trainers=True,
        visit_months=tuple(float(m) for m in d.visit_months),
        baseline=True,
        outcomes=outcomes,
        covariates=covariates,
        label=d.randomisation,
        primary_outcome=s.primary,
    )


def _outcome_spec(name: str, o) -> OutcomeSpec:
    """A scenario outcome's spec: bounded scales keep their bounds, counts are >= 0."""
    lower, upper = {
        "bounded": (getattr(o, "lower", None), getattr(o, "upper", None)),
        "count": (0.0, None),
        "binary": (0.0, 1.0),
    }.get(o.type, (None, None))
    return OutcomeSpec(name, o.type, lower, upper, o.better, o.mcid, "scenario")


def structure_to_dict(structure: TrialStructure) -> dict:
    """A JSON-ready mapping (written beside simulated data, read back by the reader)."""
    from dataclasses import asdict

    return asdict(structure)


def structure_from_dict(raw: dict) -> TrialStructure:
    """Inverse of :func:`structure_to_dict`."""
    raw = dict(raw)
    raw["outcomes"] = {k: OutcomeSpec(**v) for k, v in raw.get("outcomes", {}).items()}
    raw["covariates"] = {
        k: CovariateSpec(**{**v, "levels": tuple(v.get("levels", ()))})
        for k, v in raw.get("covariates", {}).items()
    }
    for key in ("arms", "allocation", "group_arms", "visit_months"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return TrialStructure(**raw)
