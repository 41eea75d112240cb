"""Recruitment, group formation and the trial timeline (``[sites.recruitment]``), batched.

The process per municipality, in calendar months from ``sites.recruitment.start_date``:

1. **Referrals** arrive as a Poisson process with rate ``referrals_per_month`` x a gamma
   frailty (mean 1, CV ``referral_rate_cv``: municipalities and replicates differ) x a linear
   ramp over the first ``ramp_up_months``.
2. **Funnel**: a referral meets the inclusion criteria on the records (``eligible_at_screening``),
   is invited to an assessment interview where some are found ineligible after all
   (``eligible_at_assessment``: "inclusion criteria exclude people after invitation"), and
   consents with a probability that depends on how randomisation is explained
   (``consent_individual`` / ``consent_cluster`` / ``consent_waitlist``). By independent
   thinning (Kingman 1993, *Poisson Processes*, §5.1) recruits arrive as a Poisson process
   with rate ``referrals x p_screen x p_assess x p_consent``; recruitment in a municipality
   stops when ``sites.participants`` people are enrolled. The referrals needed for n recruits
   are n plus a negative binomial count of failures, split over the three stages by a
   multinomial with the stage-wise failure probabilities.
3. **Randomisation and group formation**: individual/waitlist designs randomise each recruit
   at once (stratified by municipality) and the treated wait for a group; cohort designs let
   everyone wait for a cohort, which is randomised whole when it starts; municipality and
   stepped-wedge designs treat everyone recruited in a treated municipality (period). Groups
   form as in :mod:`trialsim.simulate.group_formation`.
4. **Loss before start**: while waiting, a person disappears with hazard
   ``loss_per_month_waiting x exp(-loss_prognosis_log_hazard x z)`` where z is the standardised
   prognosis (higher = better), so worse-prognosis people are lost more often.
5. **Staff hours** by activity: screening (per referral), assessment (per invitation, including
   those turned away), motivation (Poisson contacts: per invitation and per month of waiting)
   and the baseline measurement (per recruit).

Every replicate's draws come from ``block_rng(seed, scenario, block, "recruitment")``, so a
replicate is identical however the replicates are chunked.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from trialsim.scenario import Recruitment, Scenario, ScenarioError
from trialsim.seeds import BLOCK_SIZE, block_rng
from trialsim.simulate.group_formation import form_groups
from trialsim.simulate.layout import Layout, build_layout
from trialsim.simulate.randomise import assign_arms

ACTIVITIES = ("screening", "assessment", "motivation", "baseline")
TIMELINE_MONTHS = 120  # timeline grid: month 0..120 (events later are counted in month 120)
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class Timeline:
    """Per-participant recruitment timeline of one block of B replicates (arrays (B, N)).

    Participants are the layout's N enrolled people of each municipality in recruitment order.
    """

    enrolled_month: np.ndarray  # month of consent (enrolment)
    treated: np.ndarray  # bool: randomised to SFT
    cohort: np.ndarray  # randomised cohort (cohort design), else -1
    group: np.ndarray  # replicate-wide group index, -1 if none
    group_municipality: np.ndarray  # (B, G) municipality of group slot g, -1 unused
    start_month: np.ndarray  # first session (treated) or start of usual care; NaN if never
    waiting_months: np.ndarray  # from enrolment to start (or to loss)
    lost: np.ndarray  # bool: lost before start
    not_offered: np.ndarray  # bool: treated, but the last group of the stream was cancelled
    group_start_month: np.ndarray  # (B, G) start of group slot g, NaN unused
    cancel_month: np.ndarray  # (B, C) cancellations, NaN padding
    cancel_municipality: np.ndarray  # (B, C)
    forming: np.ndarray  # bool (B, N): recruited into a stream that forms treated groups

    @property
    def groups_started(self) -> np.ndarray:
        return np.sum(np.isfinite(self.group_start_month), axis=1)

    @property
    def groups_cancelled(self) -> np.ndarray:
        return np.sum(np.isfinite(self.cancel_month), axis=1)


def consent_probability(rec: Recruitment, randomisation: str) -> float:
    """Consent given the way randomisation is explained to the invited person."""
    if randomisation == "individual":
        return rec.consent_individual
    if randomisation == "waitlist":
        return rec.consent_waitlist
    return rec.consent_cluster  # cohort, municipality, stepped-wedge: no individual lottery


def recruits_per_month(rec: Recruitment, randomisation: str, n_municipalities: int) -> np.ndarray:
    """Expected recruits per month at full rate, per municipality (referrals x funnel)."""
    rate = np.broadcast_to(np.asarray(rec.referrals_per_month, float), (n_municipalities,))
    funnel = rec.eligible_at_screening * rec.eligible_at_assessment
    return rate * funnel * consent_probability(rec, randomisation)


def months_for_cumulative_rate(cumulative: np.ndarray, rate: np.ndarray, ramp: float):
    """Invert the cumulative intensity of a rate ramped linearly from 0 over ``ramp`` months.

    Lambda(t) = rate t^2 / (2 ramp) for t <= ramp, and rate (t - ramp / 2) afterwards.
    """
    if ramp <= 0:
        return cumulative / rate
    x = cumulative / rate
    return np.where(x <= ramp / 2, np.sqrt(2 * ramp * x), x + ramp / 2)


def draw_timeline(
    s: Scenario,
    layout: Layout,
    n_reps: int,
    *,
    rng: np.random.Generator,
    prognosis: np.ndarray | None = None,
) -> tuple[Timeline, dict[str, np.ndarray]]:
    """Draw the recruitment of ``n_reps`` replicates: the participant timeline and the counts
    of the funnel (referrals, ineligible, refusals, motivation contacts), each (B, M).

    ``prognosis`` (B, N): standardised prognosis (better = higher) driving loss before start;
    drawn here (standard normal) when not given. The draws always happen in the same order, so
    a replicate's stream does not depend on the arguments.
    """
    rec = s.sites.recruitment
    if rec is None:
        raise ScenarioError(
            f"scenario {s.name!r} has no [sites.recruitment] section; add one (see "
            "scenarios/sft-19m.toml)"
        )
    design = s.design.randomisation
    structure = s.structure
    b, n, m = n_reps, layout.n_participants, layout.n_municipalities
    muni = layout.municipality
    muni_start = np.searchsorted(muni, np.arange(m))
    muni_end = np.append(muni_start[1:], n)

    cv = rec.referral_rate_cv
    frailty = rng.gamma(1 / cv**2, cv**2, size=(b, m)) if cv > 0 else np.ones((b, m))
    rate = recruits_per_month(rec, design, m)[None, :] * frailty
    gaps = rng.standard_exponential((b, n))
    cum = np.cumsum(gaps, axis=1)
    before = np.concatenate([np.zeros((b, 1)), cum], axis=1)[:, muni_start]
    enrolled = months_for_cumulative_rate(cum - before[:, muni], rate[:, muni], rec.ramp_up_months)

    if structure.groups_are_clusters:  # cohorts: randomised whole when they start
        treated = np.zeros((b, n), dtype=bool)
        candidate = np.ones((b, n), dtype=bool)
    else:
        treated = assign_arms(s, layout, b, rng=rng).treated
        candidate = treated.copy()
    loss_draw = rng.standard_exponential((b, n))
    own_prognosis = rng.standard_normal((b, n))
    phase = rng.random((b, m))  # cohort design: phase of the systematic arm sequence
    z = own_prognosis if prognosis is None else np.asarray(prognosis, float)
    hazard = rec.loss_per_month_waiting * np.exp(-rec.loss_prognosis_log_hazard * z)
    with np.errstate(divide="ignore"):
        loss_month = enrolled + np.where(hazard > 0, loss_draw / hazard, np.inf)

    group = np.full((b, n), -1)
    cohort = np.full((b, n), -1)
    start = np.where(candidate, np.nan, enrolled)  # non-candidates start at enrolment
    lost = np.zeros((b, n), dtype=bool)
    not_offered = np.zeros((b, n), dtype=bool)
    group_starts, group_munis, cancel_months, cancel_munis = [], [], [], []
    n_groups = np.zeros(b, dtype=int)
    n_cohorts = np.zeros(b, dtype=int)
    for k in range(m):
        sl = slice(muni_start[k], muni_end[k])
        fg = form_groups(
            enrolled[:, sl],
            candidate[:, sl],
            loss_month[:, sl],
            start_size=rec.group_start_size,
            cancel_below=rec.cancel_below,
            max_wait_months=rec.max_wait_months,
        )
        started = np.isfinite(fg.group_start_month)
        if structure.groups_are_clusters:  # cohorts: randomised whole when they start
            # cohorts are randomised whole as they start: a systematic sequence with a random
            # phase gives each municipality the allocation share of its cohorts
            a = s.design.allocation_treated
            j = np.arange(started.shape[1])
            arm = np.floor((j + 1) * a + phase[:, k, None]) > np.floor(j * a + phase[:, k, None])
            arm &= started
            slot = np.maximum(fg.waited_for, 0)
            waited = fg.waited_for >= 0
            treated[:, sl] = waited & np.take_along_axis(arm, slot, axis=1)
            cohort[:, sl] = np.where(waited, n_cohorts[:, None] + fg.waited_for, -1)
            n_cohorts = n_cohorts + started.sum(axis=1)
            # treated groups are numbered among treated cohorts only
            treated_rank = np.cumsum(arm, axis=1) - 1
            in_group = (fg.group >= 0) & np.take_along_axis(arm, np.maximum(fg.group, 0), axis=1)
            local = np.where(in_group, np.take_along_axis(treated_rank, slot, axis=1), -1)
            group_start_k = np.where(arm, fg.group_start_month, np.nan)
            group_start_k = _compact(group_start_k)
        else:
            local = fg.group
            group_start_k = fg.group_start_month
        group[:, sl] = np.where(local >= 0, n_groups[:, None] + local, -1)
        start[:, sl] = np.where(candidate[:, sl], fg.start_month, start[:, sl])
        lost[:, sl] = fg.lost
        not_offered[:, sl] = fg.not_offered
        n_groups = n_groups + np.isfinite(group_start_k).sum(axis=1)
        group_starts.append(group_start_k)
        group_munis.append(np.where(np.isfinite(group_start_k), k, -1))
        cancel_months.append(fg.cancel_month)
        cancel_munis.append(np.where(np.isfinite(fg.cancel_month), k, -1))

    group_start_month, group_municipality = _pack(group_starts, group_munis)
    cancel_month, cancel_municipality = _pack(cancel_months, cancel_munis)
    waiting = np.where(lost, loss_month, start) - enrolled
    if structure.cluster_is_site:  # whole municipalities treated: groups form there
        forming_cell = np.zeros((b, len(layout.cell_size)), dtype=bool)
        np.logical_or.at(forming_cell, (np.arange(b)[:, None], layout.cell[None, :]), treated)
        forming = forming_cell[:, layout.cell]
    else:
        forming = np.ones((b, n), dtype=bool)
    timeline = Timeline(
        enrolled_month=enrolled,
        treated=treated,
        cohort=cohort,
        group=group,
        group_municipality=group_municipality,
        start_month=start,
        waiting_months=waiting,
        lost=lost,
        not_offered=not_offered,
        group_start_month=group_start_month,
        cancel_month=cancel_month,
        cancel_municipality=cancel_municipality,
        forming=forming,
    )
    return timeline, _draw_funnel(s, layout, timeline, rng=rng)


def _compact(values: np.ndarray) -> np.ndarray:
    """Move the finite entries of each row to the front (stable), NaN after."""
    order = np.argsort(~np.isfinite(values), axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1)


def _pack(values: list[np.ndarray], labels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-municipality event arrays, finite entries first, trimmed to the widest."""
    v = np.concatenate(values, axis=1) if values else np.zeros((0, 0))
    lab = np.concatenate(labels, axis=1) if labels else np.zeros((0, 0), dtype=int)
    order = np.argsort(~np.isfinite(v), axis=1, kind="stable")
    v, lab = np.take_along_axis(v, order, 1), np.take_along_axis(lab, order, 1)
    width = int(np.isfinite(v).sum(axis=1).max(initial=0))
    return v[:, : max(width, 1)], lab[:, : max(width, 1)]


def _draw_funnel(
    s: Scenario, layout: Layout, t: Timeline, *, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Referrals and the people turned away at each stage, per (B, M), plus contacts."""
    rec = s.sites.recruitment
    b, m = t.treated.shape[0], layout.n_municipalities
    enrolled = np.broadcast_to(np.asarray(s.sites.participants), (b, m))
    p_stage = np.array(
        [
            rec.eligible_at_screening,
            rec.eligible_at_assessment,
            consent_probability(rec, s.design.randomisation),
        ]
    )
    p = float(np.prod(p_stage))
    failures = rng.negative_binomial(enrolled, p) if p < 1 else np.zeros((b, m), dtype=int)
    reach = np.concatenate([[1.0], np.cumprod(p_stage)[:-1]])  # reaching each stage
    fail = reach * (1 - p_stage)
    pvals = fail / fail.sum() if fail.sum() > 0 else np.array([1.0, 0.0, 0.0])
    stages = rng.multinomial(failures, pvals)  # (B, M, 3)
    referrals = enrolled + failures
    invited = referrals - stages[..., 0]
    waiting_total = np.zeros((b, m))
    np.add.at(
        waiting_total,
        (np.arange(b)[:, None], np.broadcast_to(layout.municipality, (b, layout.n_participants))),
        np.nan_to_num(t.waiting_months),
    )
    contacts = rng.poisson(
        rec.motivation_contacts_per_invitation * invited
        + rec.motivation_contacts_per_month_waiting * waiting_total
    )
    return {
        "referrals": referrals,
        "ineligible_at_screening": stages[..., 0],
        "invited": invited,
        "ineligible_at_assessment": stages[..., 1],
        "refused_consent": stages[..., 2],
        "recruited": np.array(enrolled),
        "motivation_contacts": contacts,
    }


# ---------------------------------------------------------------------------------------------
# The batched result


@dataclass(frozen=True)
class RecruitmentResult:
    """Recruitment of R replicate trials: per-replicate arrays (leading axis R).

    Counts are people unless named otherwise; months are calendar months from ``start_date``.
    Use :meth:`summary` for medians with 10th and 90th percentiles and :meth:`to_frame` for a
    tidy per-replicate table.
    """

    scenario: str
    design: str
    start_date: datetime.date
    municipality_names: tuple[str, ...]
    visit_months: np.ndarray  # (V,)
    rep: np.ndarray  # (R,)
    months_to_full_enrolment: np.ndarray  # (R,) last municipality enrols its last recruit
    months_to_full_enrolment_by_municipality: np.ndarray  # (R, M)
    months_to_last_group_start: np.ndarray  # (R,)
    referrals: np.ndarray
    ineligible_at_screening: np.ndarray
    invited: np.ndarray
    ineligible_at_assessment: np.ndarray
    refused_consent: np.ndarray
    recruited: np.ndarray
    randomised: np.ndarray
    lost_before_start: np.ndarray
    not_offered_group: np.ndarray
    started_treatment: np.ndarray  # treated people who started a group
    groups_started: np.ndarray
    groups_cancelled: np.ndarray
    mean_group_size_at_start: np.ndarray
    recruits_per_treated_group: np.ndarray  # recruits in group-forming streams per group
    mean_waiting_months: np.ndarray  # treated who started: enrolment to first session
    staff_hours_by_activity: np.ndarray  # (R, A) in ACTIVITIES order
    sample_at_visit: np.ndarray  # (R, V) people measured at each visit
    enrolled_by_month: np.ndarray  # (R, M, 2, T+1) cumulative recruits (control, treated)
    group_starts_by_month: np.ndarray  # (R, M, T+1) cumulative group starts
    group_cancels_by_month: np.ndarray  # (R, M, T+1) cumulative cancellations

    @property
    def n_reps(self) -> int:
        return len(self.rep)

    @property
    def staff_hours(self) -> np.ndarray:
        return self.staff_hours_by_activity.sum(axis=1)

    @property
    def months(self) -> np.ndarray:
        return np.arange(TIMELINE_MONTHS + 1)

    def take(self, index) -> RecruitmentResult:
        return replace(self, **{f: getattr(self, f)[index] for f in _PER_REP})

    @staticmethod
    def concat(parts: list[RecruitmentResult]) -> RecruitmentResult:
        first = parts[0]
        if len(parts) == 1:
            return first
        return replace(
            first, **{f: np.concatenate([getattr(p, f) for p in parts]) for f in _PER_REP}
        )

    def summary(self) -> dict:
        """Median, 10th and 90th percentile over replicates of every reported quantity."""
        out: dict = {"scenario": self.scenario, "design": self.design, "reps": self.n_reps}
        for name in _SUMMARISED:
            out[name] = quantiles(getattr(self, name))
        out["staff_hours"] = quantiles(self.staff_hours)
        out["staff_hours_by_activity"] = {
            a: quantiles(self.staff_hours_by_activity[:, i]) for i, a in enumerate(ACTIVITIES)
        }
        out["sample_at_visit"] = [
            {"visit": v, "month": float(mo), **quantiles(self.sample_at_visit[:, v])}
            for v, mo in enumerate(self.visit_months)
        ]
        out["months_to_full_enrolment_by_municipality"] = {
            name: quantiles(self.months_to_full_enrolment_by_municipality[:, i])
            for i, name in enumerate(self.municipality_names)
        }
        full = out["months_to_full_enrolment"]
        out["calendar"] = {
            "start_date": self.start_date.isoformat(),
            "full_enrolment_date": {k: month_to_date(self.start_date, v) for k, v in full.items()},
            "last_group_start_date": {
                k: month_to_date(self.start_date, v)
                for k, v in out["months_to_last_group_start"].items()
            },
        }
        return out

    def to_frame(self):
        """Tidy per-replicate table: one row per replicate, one column per quantity."""
        import pandas as pd

        cols = {"rep": self.rep}
        for name in _SUMMARISED:
            cols[name] = getattr(self, name)
        cols["staff_hours"] = self.staff_hours
        for i, a in enumerate(ACTIVITIES):
            cols[f"staff_hours_{a}"] = self.staff_hours_by_activity[:, i]
        for v in range(len(self.visit_months)):
            cols[f"sample_visit_{v}"] = self.sample_at_visit[:, v]
        return pd.DataFrame(cols)


_SUMMARISED = (
    "months_to_full_enrolment",
    "months_to_last_group_start",
    "referrals",
    "ineligible_at_screening",
    "invited",
    "ineligible_at_assessment",
    "refused_consent",
    "recruited",
    "randomised",
    "lost_before_start",
    "not_offered_group",
    "started_treatment",
    "groups_started",
    "groups_cancelled",
    "mean_group_size_at_start",
    "recruits_per_treated_group",
    "mean_waiting_months",
)
_PER_REP = tuple(
    f.name
    for f in fields(RecruitmentResult)
    if f.name not in ("scenario", "design", "start_date", "municipality_names", "visit_months")
)


def quantiles(values: np.ndarray) -> dict[str, float]:
    """{"median", "p10", "p90"} of ``values`` over replicates (NaN-aware)."""
    v = np.asarray(values, dtype=float)
    if not np.isfinite(v).any():
        return {"median": float("nan"), "p10": float("nan"), "p90": float("nan")}
    q = np.nanquantile(v, [0.5, 0.1, 0.9])
    return {"median": float(q[0]), "p10": float(q[1]), "p90": float(q[2])}


def month_to_date(start: datetime.date, month: float) -> str | None:
    """The calendar date ``month`` months (of 365.25/12 days) after ``start`` (ISO)."""
    if not np.isfinite(month):
        return None
    return (start + datetime.timedelta(days=round(float(month) * DAYS_PER_MONTH))).isoformat()


def simulate_recruitment(
    scenario: Scenario,
    reps: int | Sequence[int] | np.ndarray,
    *,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> RecruitmentResult:
    """Simulate the recruitment of replicate trials of ``scenario``.

    Parameters
    ----------
    scenario : a scenario with a ``[sites.recruitment]`` section; any randomisation design.
    reps : number of replicates (0..reps-1) or the replicate indices to draw.
    seed : root seed; replicate r is identical for a given (seed, scenario name, r) however
        the replicates are batched.
    progress : called with the number of replicates finished after each block.

    Example
    -------
    >>> from trialsim.scenario import load_scenario
    >>> res = simulate_recruitment(load_scenario("scenarios/sft-19m.toml"), 200, seed=1)
    >>> sorted(res.summary()["groups_started"])
    ['median', 'p10', 'p90']
    """
    rep_idx = np.arange(reps) if np.ndim(reps) == 0 else np.unique(np.asarray(reps, dtype=int))
    if rep_idx.size == 0 or rep_idx.min() < 0:
        raise ValueError("reps must be a positive count or non-negative replicate indices")
    layout = build_layout(scenario)
    parts = []
    for block in np.unique(rep_idx // BLOCK_SIZE):
        rng = block_rng(seed, scenario.name, int(block), "recruitment")
        res = _summarise_block(scenario, layout, int(block), rng=rng)
        wanted = rep_idx[rep_idx // BLOCK_SIZE == block] - block * BLOCK_SIZE
        parts.append(res if len(wanted) == BLOCK_SIZE else res.take(wanted))
        if progress is not None:
            progress(len(wanted))
    return RecruitmentResult.concat(parts)


def _summarise_block(
    s: Scenario, layout: Layout, block: int, *, rng: np.random.Generator
) -> RecruitmentResult:
    rec = s.sites.recruitment
    b, m = BLOCK_SIZE, layout.n_municipalities
    t, funnel = draw_timeline(s, layout, b, rng=rng)
    rows = np.arange(b)[:, None]
    muni = np.broadcast_to(layout.municipality, t.treated.shape)
    tot = {k: v.sum(axis=1) for k, v in funnel.items()}

    by_muni = np.full((b, m), -np.inf)
    np.maximum.at(by_muni, (rows, muni), t.enrolled_month)
    lost = t.lost.sum(axis=1)
    randomised = tot["recruited"]
    if s.structure.groups_are_clusters:  # cohorts are randomised when they start
        randomised = randomised - lost - t.not_offered.sum(axis=1)
    groups = t.groups_started
    started = (t.treated & (t.group >= 0)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_group = np.where(groups > 0, t.forming.sum(axis=1) / groups, np.nan)
        size = np.where(groups > 0, started / groups, np.nan)
        starters = t.treated & (t.group >= 0)
        wait = np.where(
            starters.any(axis=1),
            np.sum(np.where(starters, t.waiting_months, 0.0), axis=1) / starters.sum(axis=1),
            np.nan,
        )
    hours = np.stack(
        [
            tot["referrals"] * rec.hours_per_referral,
            tot["invited"] * rec.hours_per_assessment,
            tot["motivation_contacts"] * rec.hours_per_motivation_contact,
            tot["recruited"] * rec.hours_per_baseline,
        ],
        axis=1,
    ).astype(float)
    sample = _sample_at_visits(s, tot["recruited"], lost, rng=rng)
    grid = np.arange(TIMELINE_MONTHS + 1)
    return RecruitmentResult(
        scenario=s.name,
        design=s.design.randomisation,
        start_date=rec.start_date,
        municipality_names=s.sites.names or tuple(f"M{i + 1}" for i in range(m)),
        visit_months=np.asarray(s.design.visit_months, dtype=float),
        rep=block * BLOCK_SIZE + np.arange(b),
        months_to_full_enrolment=by_muni.max(axis=1),
        months_to_full_enrolment_by_municipality=by_muni,
        months_to_last_group_start=np.where(  # NaN when no group started
            groups > 0, np.max(np.nan_to_num(t.group_start_month, nan=-1.0), axis=1), np.nan
        ),
        referrals=tot["referrals"],
        ineligible_at_screening=tot["ineligible_at_screening"],
        invited=tot["invited"],
        ineligible_at_assessment=tot["ineligible_at_assessment"],
        refused_consent=tot["refused_consent"],
        recruited=tot["recruited"],
        randomised=randomised,
        lost_before_start=lost,
        not_offered_group=t.not_offered.sum(axis=1),
        started_treatment=started,
        groups_started=groups,
        groups_cancelled=t.groups_cancelled,
        mean_group_size_at_start=size,
        recruits_per_treated_group=per_group,
        mean_waiting_months=wait,
        staff_hours_by_activity=hours,
        sample_at_visit=sample,
        enrolled_by_month=_cumulative_by_month(
            t.enrolled_month, muni * 2 + t.treated, 2 * m, grid
        ).reshape(b, m, 2, -1),
        group_starts_by_month=_cumulative_by_month(
            t.group_start_month, t.group_municipality, m, grid
        ),
        group_cancels_by_month=_cumulative_by_month(t.cancel_month, t.cancel_municipality, m, grid),
    )


def _cumulative_by_month(month: np.ndarray, label: np.ndarray, n_labels: int, grid: np.ndarray):
    """(B, n_labels, T) cumulative count of events with month <= grid[t], per label."""
    b = month.shape[0]
    ok = np.isfinite(month) & (label >= 0)
    bin_ = np.clip(np.ceil(np.nan_to_num(month)), 0, grid[-1]).astype(int)
    flat = (np.arange(b)[:, None] * n_labels + label) * len(grid) + bin_
    counts = np.bincount(flat[ok], minlength=b * n_labels * len(grid))
    return np.cumsum(counts.reshape(b, n_labels, len(grid)), axis=2)


def _sample_at_visits(s: Scenario, recruited, lost, *, rng: np.random.Generator) -> np.ndarray:
    """People measured at each visit: all recruits at baseline; afterwards those not lost
    before start, each staying per follow-up with probability q, where q^(V-1) x (recruited -
    lost) = completion_target x recruited (dropout is calibrated to the seed's share of all
    enrolled measured at the last visit; q = 1 when loss alone exceeds it)."""
    v = len(s.design.visit_months)
    at_risk = recruited - lost
    with np.errstate(divide="ignore", invalid="ignore"):
        final = np.clip(s.dropout.completion_target * recruited / at_risk, 0.0, 1.0)
    q = np.where(at_risk > 0, final, 0.0) ** (1.0 / (v - 1))
    out = [np.asarray(recruited), at_risk]
    for _ in range(1, v):
        out.append(rng.binomial(out[-1], q))
    del out[1]
    return np.stack(out, axis=1)


# ---------------------------------------------------------------------------------------------
# The link into the trial simulator (``link_trial = true``)


@dataclass(frozen=True)
class TrialLink:
    """What the trial simulator takes from recruitment for one block (arrays (B, N))."""

    treated: np.ndarray
    cohort: np.ndarray
    partition: object  # trialsim.simulate.groups.Partition
    lost: np.ndarray  # lost before start: never measured after baseline
    not_started: np.ndarray  # treated without a group (lost, or last group cancelled)
    waiting_months: np.ndarray
    enrolled_month: np.ndarray
    start_date: str

    def data_fields(self) -> dict:
        """Extra :class:`~trialsim.data.TrialData` fields: enrolment month, waiting, calendar."""
        return {
            "enrolled_month": self.enrolled_month,
            "waiting_months": self.waiting_months,
            "start_date": self.start_date,
        }


def link_to_trial(
    s: Scenario, layout: Layout, person_latent: np.ndarray, *, rng: np.random.Generator
) -> TrialLink | None:
    """Arms, groups and waiting times of the trial participants from the recruitment process,
    or None when the scenario does not link recruitment to the trial (``link_trial``).

    ``person_latent`` (B, N, K, V) are the simulator's latent person scores; the prognosis
    driving loss before start is the primary outcome's final latent score (favourable up), the
    same prognosis that drives attendance.
    """
    rec = s.sites.recruitment
    if rec is None or not rec.link_trial:
        return None
    from trialsim.simulate.groups import Partition
    from trialsim.simulate.outcomes import favourable_sign

    k_primary = list(s.outcomes).index(s.primary)
    prognosis = favourable_sign(s.outcomes[s.primary]) * person_latent[:, :, k_primary, -1]
    b, m = person_latent.shape[0], layout.n_municipalities
    t, _ = draw_timeline(s, layout, b, rng=rng, prognosis=prognosis)
    # group slots: a fixed number per municipality (the block's largest), numbered in order
    counts = np.zeros((b, m + 1), dtype=int)
    np.add.at(counts, (np.arange(b)[:, None], t.group_municipality), 1)  # -1 pads -> column m
    counts = counts[:, :m]
    slots = np.maximum(counts.max(axis=0), 0)
    slot_start = np.concatenate([[0], np.cumsum(slots)[:-1]])
    before = np.concatenate([np.zeros((b, 1), dtype=int), np.cumsum(counts, axis=1)[:, :-1]], 1)
    muni = layout.municipality
    rows = np.arange(b)[:, None]
    local = t.group - before[rows, muni]
    group = np.where(t.group >= 0, slot_start[muni] + local, -1)
    group_muni = np.repeat(np.arange(m), slots)
    local_slot = np.arange(len(group_muni)) - slot_start[group_muni]
    trainers = -(-slots // s.groups.groups_per_trainer)
    trainer_first = np.concatenate([[0], np.cumsum(trainers)[:-1]])
    group_trainer = trainer_first[group_muni] + local_slot // s.groups.groups_per_trainer
    first_cell = np.searchsorted(layout.cell_municipality, np.arange(m))
    partition = Partition(group, first_cell[group_muni], group_trainer, int(trainers.sum()))
    return TrialLink(
        treated=t.treated,
        cohort=t.cohort,
        partition=partition,
        lost=t.lost,
        not_started=t.treated & (group < 0),
        waiting_months=np.nan_to_num(t.waiting_months),
        enrolled_month=t.enrolled_month,
        start_date=rec.start_date.isoformat(),
    )
