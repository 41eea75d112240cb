"""TrialData: a batch of replicate trials as arrays, and its tidy long table.

Arrays have a leading replicate axis R, then participants N, then visits V. Simulated and
real data share the long table: one row per participant per visit, missing values empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from trialsim.errors import UserError
from trialsim.files import atomic_path
from trialsim.structure import TrialStructure


@dataclass(frozen=True)
class TrialData:
    """R replicate trials of N participants measured at V visits, with their structure.

    Person-level arrays are (R, N): each replicate has its own arms, groups, sites and
    clusters (a read-only broadcast view where they are the same in every replicate).
    ``group``/``trainer``/``cluster`` are -1 where the participant has none; outcomes are
    NaN where not measured (dropout). ``observed`` says who was measured at each visit.
    ``arm`` holds codes into ``structure.arms`` (0 = the reference arm); ``contrast`` is the
    arm an analysis compares with the reference (see :meth:`for_contrast`).
    """

    scenario: str
    structure: TrialStructure
    rep: np.ndarray  # (R,)
    site_names: tuple[str, ...]
    site: np.ndarray  # (R, N) site code (municipality, school, ...), 0 when no sites
    cluster: np.ndarray  # (R, N) randomised cluster, -1 when people were randomised
    period: np.ndarray  # (R, N) stepped-wedge period, 0 otherwise
    arm: np.ndarray  # (R, N) int codes into structure.arms
    group: np.ndarray  # (R, N)
    trainer: np.ndarray  # (R, N)
    sessions_offered: np.ndarray  # (R, N)
    sessions_attended: np.ndarray  # (R, N)
    outcomes: dict[str, np.ndarray]  # name -> (R, N, V)
    observed: np.ndarray  # (R, N, V) bool
    assessor_blinded: np.ndarray  # (R, N, V) bool
    covariates: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (R, N) float
    contrast: int = 1  # arm code compared with the reference
    # recruitment timeline (scenarios with sites.recruitment.link_trial), else None
    enrolled_month: np.ndarray | None = None  # (R, N) months from start_date to enrolment
    waiting_months: np.ndarray | None = None  # (R, N) enrolment to first session / start
    start_date: str | None = None  # ISO date of month 0
    # simulated trials only: name -> (R, N) the dose-free part of each participant's
    # final-visit outcome, before dropout (trialsim.simulate.outcomes.untreated_final), from
    # which every potential outcome of the trial follows (per-trial estimands)
    untreated: dict[str, np.ndarray] = field(default_factory=dict)
    # simulated trials only: (R, N) the dose factor each participant received (0..1; the
    # contamination share for controls), as the simulator applied it
    dose: np.ndarray | None = None

    @property
    def design(self) -> str:
        """A label for people (derived from the structure; never used to branch)."""
        return self.structure.label

    @property
    def visit_months(self) -> np.ndarray:
        return np.asarray(self.structure.visit_months, dtype=float)

    @property
    def treated(self) -> np.ndarray:
        """(R, N) bool: in the arm of :attr:`contrast`."""
        return self.arm == self.contrast

    @property
    def n_reps(self) -> int:
        return len(self.rep)

    @property
    def n_participants(self) -> int:
        return self.arm.shape[1]

    @property
    def n_visits(self) -> int:
        return len(self.structure.visit_months)

    def for_contrast(self, arm: str) -> TrialData:
        """The same data with ``arm`` as the arm compared with the reference."""
        arms = self.structure.arms
        if arm not in arms[1:]:
            raise UserError(
                f"arm {arm!r} cannot be compared with the reference {arms[0]!r}; "
                f"choose from {', '.join(arms[1:])}"
            )
        return replace(self, contrast=arms.index(arm))

    def two_arms(self) -> TrialData:
        """Only the reference arm and the contrast's arm: participants of other arms are
        left unmeasured (outcomes NaN), so any two-arm analysis compares these two."""
        if self.structure.n_arms == 2:
            return self
        keep = (self.arm == 0) | (self.arm == self.contrast)
        observed = self.observed & keep[..., None]
        return replace(
            self,
            outcomes={k: np.where(keep[..., None], v, np.nan) for k, v in self.outcomes.items()},
            observed=observed,
        )

    def take(self, index: np.ndarray) -> TrialData:
        """The replicates at positions ``index``."""
        return replace(
            self,
            **{f: _take(getattr(self, f), index) for f in _PER_REP if getattr(self, f) is not None},
            outcomes={k: v[index] for k, v in self.outcomes.items()},
            covariates={k: v[index] for k, v in self.covariates.items()},
            untreated={k: v[index] for k, v in self.untreated.items()},
        )

    @staticmethod
    def concat(parts: list[TrialData]) -> TrialData:
        first = parts[0]
        if len(parts) == 1:
            return first
        return replace(
            first,
            **{
                f: _concatenate([getattr(p, f) for p in parts])
                for f in _PER_REP
                if getattr(first, f) is not None
            },
            outcomes={k: np.concatenate([p.outcomes[k] for p in parts]) for k in first.outcomes},
            covariates={
                k: np.concatenate([p.covariates[k] for p in parts]) for k in first.covariates
            },
            untreated={k: np.concatenate([p.untreated[k] for p in parts]) for k in first.untreated},
        )

    def to_frame(self) -> pd.DataFrame:
        """The long table: one row per replicate, participant and visit.

        Columns follow the structure's names: the site column is named as the structure's
        site (e.g. ``municipality``), a randomised cluster other than the site gets its own
        column (e.g. ``cohort``), arms carry their labels.
        """
        r, n, v = self.n_reps, self.n_participants, self.n_visits
        shape = (r, n, v)
        st = self.structure

        def per_person(a):
            return np.broadcast_to(np.asarray(a)[..., None], shape).ravel()

        cols: dict[str, object] = {
            "rep": per_person(self.rep[:, None]),
            "participant": per_person(np.arange(1, n + 1)[None, :]),
        }
        if st.site is not None:
            cols[st.site] = np.asarray(self.site_names)[per_person(self.site)]
        if st.cluster is not None and not st.cluster_is_site:
            cols[st.cluster] = _nullable(per_person(self.cluster))
        cols["arm"] = np.asarray(st.arms)[per_person(self.arm)]
        cols["group"] = _nullable(per_person(self.group))
        if st.trainers:
            cols["trainer"] = _nullable(per_person(self.trainer))
        if st.n_periods > 1:
            cols["period"] = per_person(self.period)
        for name, x in self.covariates.items():
            spec = st.covariates[name]
            if spec.kind == "categorical":
                cols[name] = np.asarray(spec.levels, dtype=object)[per_person(x).astype(int)]
            else:
                cols[name] = per_person(x)
        cols["visit"] = np.broadcast_to(np.arange(v), shape).ravel()
        cols["month"] = np.broadcast_to(self.visit_months, shape).ravel()
        for name, y in self.outcomes.items():
            cols[name] = y.ravel()
        cols["sessions_offered"] = per_person(self.sessions_offered)
        cols["sessions_attended"] = per_person(self.sessions_attended)
        blinded = pd.array(self.assessor_blinded.ravel(), dtype="boolean")
        blinded[~self.observed.ravel()] = pd.NA
        cols["assessor_blinded"] = blinded
        if self.waiting_months is not None:  # the recruitment timeline and visit dates
            cols.update(_timeline_columns(self, shape, per_person))
        return pd.DataFrame(cols)


def _timeline_columns(data: TrialData, shape, per_person) -> dict:
    """enrolled_month, waiting_months and visit_date: baseline at enrolment, follow-ups
    ``visit_months`` after the start (first group session, or enrolment for controls)."""
    month = data.enrolled_month[:, :, None] + np.where(
        np.arange(shape[2]) > 0, data.waiting_months[:, :, None] + data.visit_months, 0.0
    )
    days = np.rint(month * 365.25 / 12).astype("timedelta64[D]")
    return {
        "enrolled_month": per_person(data.enrolled_month),
        "waiting_months": per_person(data.waiting_months),
        "visit_date": (np.datetime64(data.start_date, "D") + days).ravel(),
    }


_PER_REP = tuple(
    f.name
    for f in fields(TrialData)
    if f.name
    in (
        "rep",
        "site",
        "cluster",
        "period",
        "arm",
        "group",
        "trainer",
        "sessions_offered",
        "sessions_attended",
        "observed",
        "assessor_blinded",
        "enrolled_month",
        "waiting_months",
        "dose",
    )
)


def _shared_row(a: np.ndarray) -> bool:
    """True for a read-only broadcast view: the same row in every replicate."""
    return a.ndim >= 2 and a.strides[0] == 0


def _take(a: np.ndarray, index) -> np.ndarray:
    if _shared_row(a):  # keep the view: no copy of a row that every replicate shares
        return np.broadcast_to(a[0], (len(np.atleast_1d(index)), *a.shape[1:]))
    return a[index]


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    first = arrays[0]
    if all(_shared_row(a) for a in arrays) and all(
        a[0] is first[0] or np.array_equal(a[0], first[0]) for a in arrays[1:]
    ):
        return np.broadcast_to(first[0], (sum(len(a) for a in arrays), *first.shape[1:]))
    return np.concatenate(arrays)


def _nullable(ids: np.ndarray) -> pd.arrays.IntegerArray:
    out = pd.array(ids + 1, dtype="Int64")
    out[ids < 0] = pd.NA
    return out


def write_table(frame: pd.DataFrame, path: str | Path, *, csv_dialect: str = "comma") -> Path:
    """Write CSV (in ``csv_dialect``, see :data:`trialsim.files.CSV_DIALECTS`) or Parquet (by
    suffix) atomically: a temporary file, then a rename."""
    from trialsim.files import write_csv

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UserError(f"{path}: output must end in .csv or .parquet")
    if suffix == ".csv":
        return write_csv(frame, path, dialect=csv_dialect)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def read_trial_data(path, mapping=None, *, wide=None, declared=None) -> TrialData:
    """Read a trial-data file into :class:`TrialData` (see :func:`trialsim.io.read_trial_data`)."""
    from trialsim.io.load import read_trial_data as read

    return read(path, mapping, wide=wide, declared=declared)
