"""Read, map, reshape and check a trial-data file, and find its structure.

    file --read_table--> raw table --roles (--map, names)--> --wide_to_long--> long
         --arm labels (--pool)--> check_long_frame --> structure + TrialData (or problems)

Which columns are what:

* roles (:data:`trialsim.io.mapping.ROLES`) by ``--map role=COLUMN`` or by name;
* covariates by ``--covariate NAME``;
* outcomes: every other numeric column (in a wide file: every stem with visit columns);
* every other column is listed as ignored, never silently dropped.

A sidecar ``<data file>.trialsim.json`` (written beside simulated data, key ``structure``)
gives outcome specs, the arms' order, site and cluster names and covariates. Real data (no
``rep`` column) may omit the rows of visits a participant missed; they are added back with
missing outcomes, so every participant has every visit.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from trialsim.errors import UserError
from trialsim.io.checks import Collector, Problem, check_long_frame, missing_role, numeric_share
from trialsim.io.declare import Declarations
from trialsim.io.mapping import (
    ARM_ALIASES,
    CLUSTER_ALIASES,
    PERSON_ROLES,
    RESERVED,
    ROLES,
    SITE_ALIASES,
    ColumnMap,
    find_column,
    labels_of,
    parse_mapping,
    role_of,
    suggest_column,
)
from trialsim.io.readers import ROW, read_table
from trialsim.io.structure import (
    arm_order,
    build,
    covariate_specs,
    natural_sorted,
    outcome_specs,
)
from trialsim.io.wide import find_wide_columns, visit_plan, wide_to_long
from trialsim.structure import TrialStructure, structure_from_dict

SIDECAR_SUFFIX = ".trialsim.json"
_PERSON_TEXT = ("participant", "arm", "site", "cluster", "group", "trainer")
_HINT_ROLES = (
    "participant",
    "arm",
    "municipality",
    "group",
    "trainer",
    "visit",
    "sessions_offered",
    "sessions_attended",
    "assessor_blinded",
)


def sidecar_path(path: str | Path) -> Path:
    """Where the structure of a data file is written: ``<path>.trialsim.json``."""
    return Path(str(path) + SIDECAR_SUFFIX)


def read_sidecar(path: str | Path) -> TrialStructure | None:
    """The structure written beside a data file, or None when there is none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return structure_from_dict(json.loads(side.read_text(encoding="utf-8"))["structure"])
    except Exception as exc:  # a broken sidecar is named, not ignored
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"{side}: cannot read the trial structure written beside the data ({message}); "
            "delete or fix it"
        ) from None


@dataclass(frozen=True)
class LoadedTable:
    """The long table, the problems found, the structure, and how it was read."""

    frame: pd.DataFrame
    problems: list[Problem]
    source: str
    wide: bool
    names: dict = field(default_factory=dict)
    structure: TrialStructure | None = None
    notes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    data: object = None  # TrialData when there are no problems
    outcomes: dict = field(default_factory=dict)  # name -> OutcomeSpec (also with problems)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_lines(self) -> list[str]:
        return [p.line(self.source) for p in self.problems]

    def describe(self) -> list[str]:
        """What was found: layout, the structure's lines, people, notes, ignored columns."""
        lines = [f"{self.source}: {'wide' if self.wide else 'long'} layout"]
        if self.structure is not None:
            lines += self.structure.describe()
        else:
            lines += [f"outcome {o.describe()}" for o in self.outcomes.values()]
        if self.data is not None:
            lines.append(_people_line(self.data))
        lines += list(self.notes)
        if self.ignored:
            lines.append(
                f"ignored columns: {', '.join(self.ignored)} (adjust for one with "
                "--covariate NAME, or give it a role with --map ROLE=COLUMN)"
            )
        return lines


def _people_line(data) -> str:
    st = data.structure
    arm = data.arm[0]
    counts = ", ".join(f"{a} {int((arm == i).sum())}" for i, a in enumerate(st.arms))
    parts = [f"participants: {data.n_participants} ({counts})"]
    if st.site is not None:
        parts.append(f"{st.site}: {len(np.unique(data.site[0]))}")
    if st.cluster is not None and not st.cluster_is_site:
        parts.append(f"{st.cluster}: {len(np.unique(data.cluster[0][data.cluster[0] >= 0]))}")
    if st.group_arms:
        parts.append(f"groups: {len(np.unique(data.group[0][data.group[0] >= 0]))}")
    if data.n_reps > 1:
        parts.append(f"per replicate, {data.n_reps} replicates")
    return "; ".join(parts)


class DataProblems(UserError):
    """A data file with problems; ``str()`` is the first line plus a count of the rest."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        more = (
            f" (and {len(lines) - 1} more problems: run 'trialsim validate')"
            if len(lines) > 1
            else ""
        )
        super().__init__(lines[0] + more)


def _declarations(mapping, wide, declared) -> tuple[Declarations, ColumnMap]:
    declared = (declared or Declarations()).with_read_options(mapping, wide)
    cmap = parse_mapping(declared.mapping)
    if isinstance(mapping, ColumnMap):
        cmap = ColumnMap(
            {**cmap.columns, **mapping.columns}, {**cmap.arm_labels, **mapping.arm_labels}
        )
    return declared, cmap


def check_trial_file(
    path: str | Path,
    mapping: ColumnMap | str | tuple[str, ...] | None = None,
    wide: bool | None = None,
    *,
    declared: Declarations | None = None,
) -> LoadedTable:
    """Read and check a trial-data file without raising on data problems.

    Parameters
    ----------
    path : CSV (any dialect, see :mod:`trialsim.io.readers`), Parquet, .xlsx, .dta or .sav.
    mapping : ``--map`` text(s) or a :class:`ColumnMap` (added to ``declared.mapping``).
    wide : True for one row per person with ``<name>_<visit>`` columns, False for long, None
        to detect (wide when there is no ``visit`` column and some stem has visit columns).
    declared : everything else the user said (:class:`~trialsim.io.declare.Declarations`).

    Raises ``ValueError`` only when the file cannot be read or the options do not fit it.
    """
    declared, cmap = _declarations(mapping, wide, declared)
    source = str(path)
    raw = read_table(path, sheet=declared.sheet)
    sidecar = read_sidecar(path)
    scenario = None
    if declared.scenario is not None:
        from trialsim.scenario import load_scenario

        scenario = load_scenario(declared.scenario).structure
    return _Reading(raw, cmap, declared, sidecar, scenario, source, Path(path).stem).run()


def load_trial_frame(
    path: str | Path,
    mapping: ColumnMap | str | tuple[str, ...] | None = None,
    wide: bool | None = None,
    *,
    declared: Declarations | None = None,
) -> pd.DataFrame:
    """The checked long table (role names) of a trial-data file; raises
    :class:`DataProblems` if any."""
    table = check_trial_file(path, mapping, wide, declared=declared)
    if table.problems:
        raise DataProblems(table.problem_lines())
    return table.frame.drop(columns=[c for c in (ROW, "_pkey") if c in table.frame])


def read_trial_data(
    path: str | Path,
    mapping=None,
    *,
    wide: bool | None = None,
    declared: Declarations | None = None,
):
    """Read a trial-data file into :class:`~trialsim.data.TrialData` with its structure.

    Any format of :mod:`trialsim.io` (CSV in any dialect, Parquet, .xlsx, .dta, .sav), long or
    wide (``wide=None`` detects it), with ``mapping`` (``--map`` text, e.g.
    ``"psp=PSP_total,arm=gruppe"``) and ``declared`` (the other data options). The file is
    checked as ``trialsim validate`` does; problems raise :class:`DataProblems` (a
    ``ValueError``: the first problem, with a count).

    A ``rep`` column marks externally simulated replicates: every person-level field is read
    per replicate, and each replicate must hold the same number of participants.
    """
    table = check_trial_file(path, mapping, wide, declared=declared)
    if table.problems:
        raise DataProblems(table.problem_lines())
    return table.data


class _Reading:
    """One pass over a raw table (see the module docstring)."""

    def __init__(self, raw, cmap, declared, sidecar, scenario, source, stem):
        self.raw = raw
        self.cmap = cmap
        self.declared = declared
        self.sidecar = sidecar
        self.scenario = scenario
        self.source = source
        self.stem = stem
        self.notes: list[str] = []
        self.ignored: list[str] = []
        self.rename: dict[str, str] = {}  # file column -> role / name
        self.site_name: str | None = None
        self.cluster_name: str | None = None
        self.c = Collector()

    # -- roles ----------------------------------------------------------------------------

    def _assign(self, col: str, internal: str, why: str) -> None:
        if col in self.rename:
            raise UserError(
                f"{self.source}: column {col!r} is given two roles ({self.rename[col]}, "
                f"{internal}); {why}"
            )
        if internal in self.rename.values():
            other = next(k for k, v in self.rename.items() if v == internal)
            raise UserError(
                f"{self.source}: columns {other!r} and {col!r} are both {internal!r}; map only "
                "one column to each role or name"
            )
        self.rename[col] = internal

    def renames(self) -> dict[str, str]:
        """Apply ``--map NAME=COLUMN`` for names that are not roles (outcomes, wide
        columns); returns {new name: file name}."""
        present = [col for col in self.raw.columns if not col.startswith("_")]
        out = {}
        for target, src in self.cmap.columns.items():
            if role_of(target) is not None:
                continue
            col = find_column(src, present, source=self.source, option=f"--map {target}={src}")
            if target in present and target != col:
                raise UserError(
                    f"{self.source}: --map {target}={src}: the file has a column {target!r} "
                    "already; map only one column to each name"
                )
            out[target] = col
        self.raw = self.raw.rename(columns={v: k for k, v in out.items()})
        return out

    def roles(self, present: list[str]) -> None:
        for target, src in self.cmap.columns.items():
            role = role_of(target)
            if role is None:
                continue
            col = find_column(src, present, source=self.source, option=f"--map {target}={src}")
            self._assign(col, role, "map each column once")
            t = target.casefold()
            if role == "site":
                self.site_name = t if t != "site" else col.casefold()
            elif role == "cluster":
                self.cluster_name = t if t != "cluster" else col.casefold()
        taken = set(self.rename.values())
        side = self.sidecar
        if side is not None:
            for role, name in (
                ("site", side.site),
                ("cluster", None if side.cluster_is_site else side.cluster),
            ):
                col = next((c for c in present if name and c.casefold() == name.casefold()), None)
                if col and role not in taken and col not in self.rename:
                    self._assign(col, role, "")
                    taken.add(role)
                    setattr(self, f"{role}_name", name)
        for col in present:
            role = role_of(col)
            if col in self.rename or role is None:
                continue
            if role in taken:
                used = next(k for k, v in self.rename.items() if v == role)
                self.ignored.append(f"{col} (another {role} column: {used} is used)")
                self.rename[col] = None  # handled
                continue
            self._assign(col, role, "")
            taken.add(role)
            if role == "site":
                self.site_name = col.casefold()
            elif role == "cluster":
                self.cluster_name = col.casefold()
        if "arm" not in taken:
            for col in present:
                if col not in self.rename and col.casefold() in ARM_ALIASES:
                    self._assign(col, "arm", "")
                    self.notes.append(
                        f"arm: column {col!r} read as the arm (if not, --map arm=COLUMN)"
                    )
                    break

    def covariates(self, present: list[str]) -> dict[str, str | None]:
        kinds: dict[str, str | None] = {}
        renamed = {v: k for k, v in self.rename.items() if v is not None}
        for name, kind in self.declared.covariates:
            if name in renamed and role_of(name) is None:
                col = renamed[name]
            else:
                col = find_column(name, present, source=self.source, option=f"--covariate {name}")
            current = self.rename.get(col)
            if current is not None and current != name:
                raise UserError(
                    f"{self.source}: --covariate {name}: column {col!r} is the {current} "
                    "role; a covariate is another column"
                )
            self.rename.pop(col, None)
            internal = col.casefold() if current is None else name.casefold()
            self._assign(col, internal, "")
            kinds[internal] = kind
        if self.sidecar is not None:  # covariates written by the simulator
            for name in self.sidecar.covariates:
                col = next((c for c in present if c.casefold() == name.casefold()), None)
                if col and col not in self.rename and name not in kinds:
                    self._assign(col, name, "")
                    kinds[name] = None
        return kinds

    def misspelt(self, free: list[str]) -> list[str]:
        """Columns whose name is a role's, misspelt: a problem each, then ignored."""
        taken = set(v for v in self.rename.values() if v)
        names = [r for r in (*ROLES, *SITE_ALIASES, *CLUSTER_ALIASES) if role_of(r) not in taken]
        out = []
        for col in free:
            close = difflib.get_close_matches(col.casefold(), names, n=1, cutoff=0.85)
            if close:
                self.c.add(
                    f"column {col!r} looks like a misspelt {close[0]!r} and is ignored; rename "
                    f"it or use --map {close[0]}={col}"
                )
                out.append(col)
        return out

    # -- the pass -------------------------------------------------------------------------

    def run(self) -> LoadedTable:
        renamed = self.renames()
        raw, declared, c = self.raw, self.declared, self.c
        present = [col for col in raw.columns if not col.startswith("_")]
        self.roles(present)
        cov_kinds = self.covariates(present)
        free = [col for col in present if col not in self.rename]
        for col in free:
            if col.casefold() in RESERVED:
                self.ignored.append(f"{col} (recruitment timeline, not read)")
        free = [col for col in free if col.casefold() not in RESERVED]
        typos = self.misspelt(free)
        free = [col for col in free if col not in typos]
        self.ignored += [f"{col} (misspelt role?)" for col in typos]

        roles = {v for v in self.rename.values() if v}
        frame = raw.rename(columns={k: v for k, v in self.rename.items() if v})
        frame = frame.drop(columns=[k for k, v in self.rename.items() if v is None])
        frame = frame.drop(columns=[col for col in typos])
        names = {v: k for k, v in self.rename.items() if v and v != k}
        names.update({k: v for k, v in renamed.items() if k != v})
        has_visit = "visit" in roles
        if declared.wide is True and has_visit:
            raise UserError(f"{self.source}: a wide file has no visit column; drop --wide")
        wide_cols = find_wide_columns(free, declared.visit_months)
        is_wide = bool(wide_cols.columns) and not has_visit
        if declared.wide is not None:
            is_wide = declared.wide
        if declared.wide is True and not wide_cols.columns:
            raise UserError(
                f"{self.source}: --wide given but no columns look like <name>_<visit> (two or "
                "more, e.g. score_0 and score_1, bdi.pre and bdi.8m); rename them or use --map"
            )
        if "rep" not in frame:
            frame["rep"] = 0
        wide_names: dict = {}
        months: list[float] | None = None
        baseline = True
        if not is_wide and "participant" not in frame and not has_visit:
            frame["participant"] = frame.groupby("rep").cumcount() + 1
            self.notes.append("no participant column: each row is one participant")
        if is_wide:
            if "participant" not in frame:
                frame["participant"] = frame.groupby("rep").cumcount() + 1
                self.notes.append("no participant column: each row is one participant")
            self._wide_problems(wide_cols)
            keys, months, baseline, vnotes = visit_plan(wide_cols)
            self.notes += vnotes
            frame, wide_names = wide_to_long(frame, wide_cols, keys)
            outcomes = wide_cols.stems
            for col in free:
                if col in wide_cols.columns or col in wide_cols.unreadable:
                    continue
                kind = "numeric, one value per person" if numeric_share(raw[col]) > 0.5 else "text"
                self.ignored.append(f"{col} ({kind})")
        else:
            outcomes = []
            for col in free:
                share = numeric_share(raw[col])
                if raw[col].notna().sum() == 0:
                    self.ignored.append(f"{col} (empty)")
                elif share > 0.5:
                    name = col.casefold()
                    if name in frame.columns and name != col or name in outcomes:
                        c.add(
                            f"column {col!r} and another column are both {name!r} (names are "
                            "read ignoring case); rename one",
                            None,
                            col,
                        )
                        continue
                    frame = frame.rename(columns={col: name})
                    if name != col:
                        names[name] = col
                    outcomes.append(name)
                else:
                    self.ignored.append(f"{col} (text)")
        c.names, c.wide_names = names, wide_names
        hints = self._hints(present)
        visit_column = has_visit
        if "arm" not in frame:
            missing_role(c, "arm", present, "which arm each participant was randomised to")
        if not is_wide and not has_visit:
            if "participant" in frame and frame.duplicated(["rep", "participant"]).any():
                missing_role(
                    c,
                    "visit",
                    present,
                    "several rows per participant; 0 = baseline, 1, 2, ... follow-ups",
                )
            else:
                frame["visit"] = 0
                baseline = False
                months = [0.0]
                self.notes.append(
                    "no visit column and one row per participant: post-test only (one visit, "
                    "no baseline)"
                )
        elif has_visit and "participant" not in frame:
            missing_role(c, "participant", present, "who each row is")
        if not outcomes:
            c.add(
                "no outcome column: no numeric column besides the roles "
                f"({', '.join(sorted(roles)) or 'none'}); outcomes are the other numeric "
                "columns (see trialsim validate --help)"
            )
        for col in _PERSON_TEXT:
            if col in frame:
                frame[col] = labels_of(frame[col])
        if "arm" in frame:
            frame["arm"] = self._arm_labels(frame["arm"])
        values = {o: pd.to_numeric(frame[o], errors="coerce").to_numpy(float) for o in outcomes}
        specs = outcome_specs(values, declared, scenario=self.scenario, sidecar=self.sidecar)
        self._unknown_options(outcomes)
        covs = covariate_specs(frame, cov_kinds, self.sidecar)
        inferred = [name for name, spec in specs.items() if spec.known_from == "inferred"]
        if inferred:
            self.notes.append(
                f"outcome type inferred from the values: {', '.join(inferred)}; declare types "
                "and directions with --outcome-type, --better, --bounds, --mcid or --scenario"
            )
        frame = check_long_frame(
            frame,
            c,
            outcomes=specs,
            covariates={n: s.kind for n, s in covs.items()},
            site_name=self.site_name,
            cluster_name=self.cluster_name,
            visit_column=visit_column,
        )
        arms = self._arms(frame, c)
        self._replicates(frame, c)
        structure = data = None
        if arms is not None and "participant" in frame and "visit" in frame:
            try:
                frame = complete_visits(frame)
                data = self._build(frame, arms, specs, covs, months, baseline)
                structure = data.structure
            except Exception:
                if not c.problems:
                    raise
                data = structure = None
        if c.problems:
            data = None
        return LoadedTable(
            frame,
            c.problems,
            self.source,
            is_wide,
            names,
            structure,
            tuple(self.notes),
            tuple(self.ignored),
            tuple(hints),
            data,
            specs,
        )

    def _wide_problems(self, wide) -> None:
        c = self.c
        for col, (stem, label) in wide.unreadable.items():
            c.add(
                f"cannot read {label!r} as a visit of {stem!r} (e.g. {stem}_0, {stem}_pre, "
                f"{stem}_6m); rename the column, or give its month with --visit-months "
                f"{label}=MONTH",
                None,
                col,
            )
        by_stem: dict[tuple, list[str]] = {}
        for col, (stem, label) in wide.columns.items():
            if label.negative:
                c.add(
                    f"visit {label.text!r} of {stem!r} is negative; visits count from 0 "
                    "(baseline) or are months after randomisation",
                    None,
                    col,
                )
                continue
            by_stem.setdefault((stem, label.key), []).append(col)
        for (stem, _), cols in by_stem.items():
            if len(cols) > 1:
                c.add(
                    f"columns {', '.join(map(repr, cols))} name the same visit of {stem!r}; keep "
                    "one, or say their months with --visit-months",
                    None,
                    cols[-1],
                )

    def _hints(self, present) -> list[str]:
        """``role=column`` suggestions for roles without a column."""
        taken = {v for v in self.rename.values() if v}
        out = []
        for role in _HINT_ROLES:
            if role_of(role) in taken:
                continue
            guess = suggest_column(role, [p for p in present if p not in self.rename])
            if guess and f"={guess}" not in ",".join(out):
                out.append(f"{role}={guess}")
        return out

    def _arm_labels(self, arm: pd.Series) -> pd.Series:
        relabel = self.cmap.arm_labels
        labels = set(arm.dropna().unique())
        lookup = {lab: relabel.get(lab.casefold(), lab) for lab in labels}
        for new, olds in self.declared.pool:
            for old in olds:
                match = [lab for lab in labels if lab == old] or [
                    lab for lab in labels if lab.casefold() == old.casefold()
                ]
                if not match:
                    self.c.add(
                        f"--pool {new}={'+'.join(olds)}: no arm label {old!r}; the arms are "
                        f"{', '.join(natural_sorted(labels))}",
                        None,
                        "arm",
                    )
                for lab in match:
                    lookup[lab] = new
            self.notes.append(f"arms pooled: {new} = {' + '.join(olds)} (--pool)")
        return arm.map(lookup).where(arm.notna(), None)

    def _unknown_options(self, outcomes) -> None:
        known = {o.casefold() for o in outcomes}
        for name in sorted(self.declared.named_outcomes() - known):
            self.c.add(
                f"an option names outcome {name!r}, which the data do not have; outcomes are "
                f"{', '.join(outcomes) or 'none'}"
            )
        if len(outcomes) > 1 and (None in self.declared.better or None in self.declared.mcid):
            self.notes.append(
                "a bare --better/--mcid applies to the outcome analysed (several outcomes here)"
            )

    def _arms(self, frame, c) -> tuple[str, ...] | None:
        if "arm" not in frame or "arm" in c.bad_columns:
            return None
        labels = frame["arm"].dropna().unique()
        if len(labels) < 2:
            return None
        declared = self.declared
        if declared.reference is None and "control" in self.cmap.arm_labels.values():
            declared = replace(declared, reference="control")
        known = self.sidecar.arms if self.sidecar is not None else None
        if known is None and self.scenario is not None:
            known = self.scenario.arms
        arms, problem = arm_order(labels, declared, known=known)
        if problem:
            c.add(problem, None, "arm")
        return arms

    def _replicates(self, frame, c) -> None:
        if "participant" not in frame or frame["rep"].nunique() < 2:
            return
        sizes = frame.groupby("rep")["participant"].nunique()
        if sizes.nunique() > 1:
            small = sizes.idxmin()
            c.add(
                f"replicate {fmt_rep(small)} has {sizes.min()} participants, replicate "
                f"{fmt_rep(sizes.idxmax())} {sizes.max()}; every replicate must hold the same "
                "number of participants",
                None,
                "rep",
            )

    def _build(self, frame, arms, specs, covs, months, baseline):
        frame = frame.copy()
        order = natural_sorted(frame["participant"].dropna().unique())
        frame["_pkey"] = frame["participant"].map({p: i for i, p in enumerate(order)})
        frame["visit"] = frame["visit"].astype(int)
        visits = np.sort(frame["visit"].unique())
        sizes = frame.groupby("rep")["participant"].nunique()
        if len(frame) != sizes.iloc[0] * len(sizes) * len(visits):
            raise UserError("not one row per replicate, participant and visit")
        if months is None:
            months = [float(v) for v in visits]
            if "month" in frame:
                med = frame.groupby("visit")["month"].median().reindex(visits)
                if med.notna().all():
                    months = [float(m) for m in med]
            baseline = bool(visits[0] == 0)
        elif "month" in frame and len(visits) == 1:
            med = frame["month"].median()
            months = [float(med)] if np.isfinite(med) else months
        return build(
            frame,
            scenario=self.stem,
            arms=arms,
            site_name=self.site_name if "site" in frame else None,
            cluster_name=self.cluster_name if "cluster" in frame else None,
            outcomes=specs,
            covariates=covs,
            visit_months=tuple(months),
            baseline=baseline,
            sidecar=self.sidecar,
            notes=self.notes,
            primary=next(
                (
                    known.primary_outcome
                    for known in (self.scenario, self.sidecar)
                    if known is not None and known.primary_outcome in specs
                ),
                None,
            ),
        )


def fmt_rep(value) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return str(value)


def complete_visits(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the missing (replicate, participant, visit) rows with empty outcomes."""
    people = frame[["rep", "participant"]].drop_duplicates()
    visits = pd.DataFrame({"visit": np.sort(frame["visit"].dropna().unique())})
    if len(frame) == len(people) * len(visits):
        return frame
    full = people.merge(visits, how="cross")
    out = full.merge(frame, on=["rep", "participant", "visit"], how="left")
    person_cols = [col for col in out.columns if col in PERSON_ROLES]
    if person_cols:
        out[person_cols] = out.groupby(["rep", "participant"], sort=False)[person_cols].transform(
            "first"
        )
    return out
