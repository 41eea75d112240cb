"""The trial structure found in a checked long table, and the :class:`TrialData` it gives.

What is read from the data (arms, sites, clusters, groups, periods, visits) and what is
declared (outcome types and directions, covariates, the reference arm) meet here:

* arms keep the file's labels; the reference is ``--reference``, else the one label
  recognised as a control (:data:`trialsim.io.mapping.CONTROL_LABELS`), else a problem;
  the others follow in sorted order;
* sites are strata unless every site lies wholly in one arm: then the site is the
  randomised cluster (when there is no cluster column);
* delivery groups may be in any arm; ``groups_are_clusters`` when, in the arms with groups,
  the groups are exactly the randomised clusters;
* outcome specs come from a scenario, else a sidecar written beside simulated data, else
  inference (0/1 only: binary; otherwise continuous), with ``--outcome-type``, ``--better``,
  ``--bounds`` and ``--mcid`` on top.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from trialsim.io.declare import Declarations
from trialsim.io.mapping import is_control_label
from trialsim.structure import CovariateSpec, OutcomeSpec, TrialStructure


def natural_sorted(labels) -> list[str]:
    """Labels sorted as numbers when all are numbers, else as text (R's factor order)."""
    labels = [str(x) for x in labels]
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def arm_order(
    labels,
    declared: Declarations,
    *,
    known: tuple[str, ...] | None = None,
) -> tuple[tuple[str, ...] | None, str | None]:
    """(arms with the reference first, None) or (None, a problem saying what to declare).

    ``known`` is an order from a sidecar or scenario, used when it holds every label.
    """
    labels = natural_sorted(set(labels))
    if declared.reference is not None:
        ref = next((a for a in labels if a == declared.reference), None)
        ref = ref or next(
            (a for a in labels if a.casefold() == declared.reference.casefold()), None
        )
        if ref is None:
            return None, (
                f"--reference {declared.reference}: no such arm label; the arms are "
                f"{', '.join(labels)}"
            )
    elif known and set(labels) <= set(known) and known[0] in labels:
        return tuple(a for a in known if a in labels), None
    else:
        controls = [a for a in labels if is_control_label(a)]
        if len(controls) != 1:
            which = (
                f"several labels look like a control ({', '.join(controls)})"
                if controls
                else "no label is a known control name (control, TAU, placebo, 0, ...)"
            )
            return None, (
                f"cannot tell which arm is the reference (control): arms are "
                f"{', '.join(labels)} and {which}; say it with --reference LABEL"
            )
        ref = controls[0]
    return (ref, *[a for a in labels if a != ref]), None


def infer_outcome(name: str, values: np.ndarray) -> OutcomeSpec:
    """Binary when the (finite) values are all 0 or 1, else continuous; direction unknown."""
    v = values[np.isfinite(values)]
    kind = "binary" if v.size and np.isin(v, (0.0, 1.0)).all() else "continuous"
    return OutcomeSpec(name, kind, known_from="inferred")


def outcome_specs(
    values: dict[str, np.ndarray],
    declared: Declarations,
    *,
    scenario: TrialStructure | None = None,
    sidecar: TrialStructure | None = None,
) -> dict[str, OutcomeSpec]:
    """Each outcome's spec: scenario, else sidecar, else inferred; then the options."""

    def lookup(st, name):
        if st is None:
            return None
        for k, spec in st.outcomes.items():
            if k.casefold() == name.casefold():
                return replace(spec, name=name)
        return None

    only = len(values) == 1
    specs = {}
    for name, v in values.items():
        spec = lookup(scenario, name) or lookup(sidecar, name) or infer_outcome(name, v)
        changes: dict = {}
        kind = declared.outcome_type(name)
        if kind is not None:
            changes.update(type=kind, known_from="option")
            if kind == "binary" and declared.bounds_for(name) is None:
                changes.update(lower=0.0, upper=1.0)
        bounds = declared.bounds_for(name)
        if bounds is not None:
            changes.update(lower=bounds[0], upper=bounds[1])
        better = declared.better_for(name) if only else _named(declared.better, name)
        if better is not None:
            changes["better"] = better
        mcid = declared.mcid_for(name) if only else _named(declared.mcid, name)
        if mcid is not None:
            changes["mcid"] = mcid
        specs[name] = replace(spec, **changes)
    return specs


def _named(d: dict, name: str):
    for k, v in d.items():
        if k is not None and k.casefold() == name.casefold():
            return v
    return None


def covariate_specs(frame: pd.DataFrame, kinds: dict[str, str | None], sidecar=None) -> dict:
    """name -> CovariateSpec: forced kind, else the sidecar's, else numeric when all values
    are numbers; categorical levels sorted (the first is the reference level)."""
    from trialsim.io.checks import numeric_share

    specs = {}
    for name, kind in kinds.items():
        col = frame[name]
        side = sidecar.covariates.get(name) if sidecar is not None else None
        if kind is None and side is not None:
            kind = side.kind
        if kind is None:
            kind = "numeric" if numeric_share(col) == 1.0 else "categorical"
        if kind == "numeric":
            specs[name] = CovariateSpec(name, "numeric")
            continue
        present = col.dropna()
        if numeric_share(present) == 1.0 and len(present):
            levels = natural_sorted({_num_label(x) for x in present})
        else:
            levels = natural_sorted({str(x) for x in present})
        if side is not None and side.kind == "categorical" and set(levels) <= set(side.levels):
            levels = list(side.levels)
        specs[name] = CovariateSpec(name, "categorical", tuple(levels))
    return specs


def _num_label(x) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return str(int(f)) if f == int(f) else repr(f)


def _codes(labels: pd.Series, names) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(names)}
    return labels.map(lookup).fillna(-1).to_numpy(dtype=int)


def _ints(people: pd.DataFrame, col: str, fill=0) -> np.ndarray:
    if col not in people:
        return np.full(len(people), fill, dtype=int)
    return pd.to_numeric(people[col], errors="coerce").fillna(fill).to_numpy().astype(int)


def build(
    frame: pd.DataFrame,
    *,
    scenario: str,
    arms: tuple[str, ...],
    site_name: str | None,
    cluster_name: str | None,
    outcomes: dict[str, OutcomeSpec],
    covariates: dict[str, CovariateSpec],
    visit_months: tuple[float, ...],
    baseline: bool,
    sidecar: TrialStructure | None = None,
    notes: list[str] | None = None,
    primary: str | None = None,
):
    """TrialData from a checked, complete long table (every replicate, person and visit).

    Person-level values are read per replicate. ``notes`` receives lines describing what
    was inferred (e.g. a site that is the randomised cluster).
    """
    from trialsim.data import TrialData

    notes = notes if notes is not None else []
    frame = frame.sort_values(["rep", "_pkey", "visit"], kind="stable")
    reps = np.sort(frame["rep"].unique())
    visits = np.sort(frame["visit"].unique())
    r, v = len(reps), len(visits)
    n = len(frame) // (r * v)
    people = frame.groupby(["rep", "_pkey"], sort=True).first().reset_index()

    def person(a):
        return np.asarray(a).reshape(r, n)

    arm = person(_codes(people["arm"], arms)).astype(np.int8)
    if site_name is not None:
        site_names = tuple(natural_sorted(people["site"].dropna().unique()))
        site = person(_codes(people["site"], site_names))
    else:
        site_names, site = (), np.zeros((r, n), dtype=int)
    period = person(_ints(people, "period"))
    n_periods = int(period.max()) + 1 if "period" in people else 1

    def ids(col):
        if col not in people:
            return np.full((r, n), -1)
        names = natural_sorted(people[col].dropna().unique())
        return person(_codes(people[col], names))

    group, trainer = ids("group"), ids("trainer")
    # sites wholly in one arm (in every replicate): the site is the randomised unit
    wholly = False
    if site_name is not None and len(site_names) > 1:
        per_site = people.groupby(["rep", "site"])["arm"].nunique()
        wholly = bool((per_site == 1).all())
    if cluster_name is not None:
        cluster, cluster_label = ids("cluster"), cluster_name
    elif site_name is not None and (wholly or n_periods > 1):
        cluster, cluster_label = site, site_name
        if wholly:
            notes.append(
                f"{site_name} randomised (each {site_name} wholly in one arm): the "
                f"{site_name} is the randomised cluster"
            )
        else:
            notes.append(f"{site_name}s randomised to the step of a stepped wedge")
    else:
        cluster, cluster_label = np.full((r, n), -1), None
    if sidecar is not None and sidecar.cluster is not None and sidecar.cluster == site_name:
        cluster, cluster_label = site, site_name
    stratified = (
        site_name is not None and len(site_names) > 1 and not wholly and cluster_label != site_name
    )
    group_arms = tuple(a for i, a in enumerate(arms) if ((arm == i) & (group >= 0)).any())
    groups_are_clusters = False
    if cluster_label is not None and group_arms:
        in_group_arms = np.isin(arm, [arms.index(a) for a in group_arms])
        groups_are_clusters = all(
            _same_partition(group[k][in_group_arms[k]], cluster[k][in_group_arms[k]])
            for k in range(r)
        )
    # allocation: shares of the randomised units
    if cluster_label is not None and n_periods == 1:
        units = pd.DataFrame({"rep": np.repeat(reps, n), "c": cluster.ravel(), "a": arm.ravel()})
        units = units[units["c"] >= 0].drop_duplicates(["rep", "c"])
        counts = np.bincount(units["a"].to_numpy(), minlength=len(arms))
    else:
        counts = np.bincount(arm.ravel(), minlength=len(arms))
    allocation = tuple(float(x) for x in counts / max(counts.sum(), 1))
    if sidecar is not None and sidecar.arms == arms:
        allocation = sidecar.allocation  # as designed, not as it happened to fall
    elif min(allocation) == 0:
        allocation = tuple(1.0 / len(arms) for _ in arms)
    if n_periods > 1:
        label = "stepped-wedge"
    elif cluster_label is not None:
        label = cluster_label
    else:
        label = "individual"
    if sidecar is not None:
        label = sidecar.label
    structure = TrialStructure(
        arms=arms,
        allocation=allocation,
        site=site_name,
        stratified=stratified,
        cluster=cluster_label,
        group_arms=group_arms,
        group_variance=sidecar.group_variance if sidecar is not None else "common",
        groups_are_clusters=groups_are_clusters,
        n_periods=n_periods,
        trainers="trainer" in people,
        visit_months=tuple(float(m) for m in visit_months),
        baseline=baseline,
        outcomes=outcomes,
        covariates=covariates,
        label=label,
        primary_outcome=primary,
    )

    def grid(col):
        return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float).reshape(r, n, v)

    ys = {name: grid(name) for name in outcomes}
    observed = np.zeros((r, n, v), dtype=bool)
    for y in ys.values():
        observed |= np.isfinite(y)
    if "assessor_blinded" in frame:
        b = grid("assessor_blinded")
        blinded = ~(np.isfinite(b) & (b == 0))
    else:
        blinded = np.ones((r, n, v), dtype=bool)
    covs = {}
    for name, spec in covariates.items():
        if spec.kind == "numeric":
            covs[name] = person(pd.to_numeric(people[name], errors="coerce").to_numpy(float))
        else:
            text = people[name].map(lambda x: None if pd.isna(x) else _num_label(x))
            codes = _codes(text, spec.levels).astype(float)
            codes[codes < 0] = np.nan
            covs[name] = person(codes)
    data = TrialData(
        scenario=scenario,
        structure=structure,
        rep=reps.astype(int),
        site_names=site_names,
        site=site,
        cluster=cluster,
        period=period,
        arm=arm,
        group=group,
        trainer=trainer,
        sessions_offered=person(_ints(people, "sessions_offered")),
        sessions_attended=person(_ints(people, "sessions_attended")),
        outcomes=ys,
        observed=observed,
        assessor_blinded=blinded,
        covariates=covs,
    )
    return data


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))
