"""Groups and trainers (scenario ``[groups]``): splitting members of a cell into groups.

Group sizes are ``min_size`` plus a Dirichlet-multinomial share of the remaining members, with
the Dirichlet concentration chosen so the sizes have the scenario's coefficient of variation
(the least variable split, plain multinomial, sets a floor on it), then capped at ``max_size``.
Each municipality's groups are run by trainers, ``groups_per_trainer`` groups each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialsim.scenario import Groups, Scenario, groups_in_cell
from trialsim.simulate.layout import Layout


@dataclass(frozen=True)
class Partition:
    group: np.ndarray  # (B, N) group slot of each member, -1 for non-members
    group_cell: np.ndarray  # (G,) cell of each group slot
    group_trainer: np.ndarray  # (G,) trainer of each group slot
    n_trainers: int
    group_arm: np.ndarray | None = None  # (G,) arm code of each group slot (None: all arm 1)


def draw_partition(
    member: np.ndarray, layout: Layout, params: Groups, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split the members of each cell into groups; return ``(group (B, N), group_cell (G,))``.

    Group slots are numbered cell by cell (``G_max`` slots per cell, unused ones empty).
    """
    n_reps, n_cells = member.shape[0], len(layout.cell_size)
    sizes = _draw_sizes(_count_by_cell(member, layout), params, rng=rng)  # (B, C, G_max)
    group_cell = np.repeat(np.arange(n_cells), sizes.shape[2])
    sizes = sizes.reshape(n_reps, -1)
    # members fill the groups in cell order: repeating each slot number by its group's size
    # lists the group of every member, replicate by replicate (the sizes of a cell's groups
    # add up to its members)
    slots = np.broadcast_to(np.arange(sizes.shape[1]), sizes.shape)
    group = np.full(member.shape, -1, dtype=np.intp)
    group[member] = np.repeat(slots.ravel(), sizes.ravel())
    return group, group_cell


def assign_groups(
    treated: np.ndarray,
    layout: Layout,
    params: Groups,
    *,
    rng: np.random.Generator,
    cohorts: tuple[np.ndarray, np.ndarray] | None = None,
) -> Partition:
    """Groups for the treated participants, and the trainers who run them.

    The treated members of each cell are split into groups; under cohort randomisation
    (``cohorts`` = the cohort ids (B, N) and the cell of each id) each treated cohort is
    its own group."""
    if cohorts is None:
        group, group_cell = draw_partition(treated, layout, params, rng=rng)
    else:
        cohort, group_cell = cohorts
        group = np.where(treated, cohort, -1)
    group_muni = layout.cell_municipality[group_cell]
    first = np.searchsorted(group_muni, np.arange(layout.n_municipalities))
    local = np.arange(len(group_muni)) - first[group_muni]
    per_muni = np.bincount(group_muni, minlength=layout.n_municipalities)
    trainers_per_muni = -(-per_muni // params.groups_per_trainer)
    trainer_first = np.concatenate([[0], np.cumsum(trainers_per_muni)[:-1]])
    group_trainer = trainer_first[group_muni] + local // params.groups_per_trainer
    return Partition(group, group_cell, group_trainer, int(trainers_per_muni.sum()))


def assign_arm_groups(
    arm: np.ndarray, layout: Layout, s: Scenario, *, rng: np.random.Generator
) -> Partition:
    """Groups for every arm with groups (``s.arm_has_groups``): each arm's members of a cell
    are split into groups of their own (groups never mix arms), active arms first in order,
    then the reference arm's attention-control groups (``[groups.control]``, its mean size).
    Trainers run groups of one arm. Slots and trainers are numbered arm after arm."""
    has = s.arm_has_groups
    order = [a for a in range(1, len(has)) if has[a]] + ([0] if has[0] else [])
    parts, arms = [], []
    for a in order:
        params = s.groups
        if a == 0 and s.groups.control.mean_size is not None:
            params = params.model_copy(update={"mean_size": s.groups.control.mean_size})
        parts.append(assign_groups(arm == a, layout, params, rng=rng))
        arms.append(a)
    if len(parts) == 1 and arms[0] == 1:
        return parts[0]
    group = np.full(arm.shape, -1, dtype=np.intp)
    slot0 = 0
    for p in parts:
        np.copyto(group, p.group + slot0, where=p.group >= 0)
        slot0 += len(p.group_cell)
    return Partition(
        group=group,
        group_cell=np.concatenate([p.group_cell for p in parts]),
        group_trainer=np.concatenate(
            [p.group_trainer + sum(q.n_trainers for q in parts[:i]) for i, p in enumerate(parts)]
        ),
        n_trainers=sum(p.n_trainers for p in parts),
        group_arm=np.concatenate(
            [np.full(len(p.group_cell), a, dtype=np.int8) for a, p in zip(arms, parts, strict=True)]
        ),
    )


def _count_by_cell(member: np.ndarray, layout: Layout) -> np.ndarray:
    cs = np.concatenate([np.zeros((member.shape[0], 1), dtype=int), np.cumsum(member, axis=1)], 1)
    ends = layout.cell_start + layout.cell_size
    return cs[:, ends] - cs[:, layout.cell_start]


def _draw_sizes(n: np.ndarray, params: Groups, *, rng: np.random.Generator) -> np.ndarray:
    """Group sizes (B, C, G_max) for ``n`` (B, C) members of each cell; unused slots are 0."""
    n_groups = np.where(n > 0, groups_in_cell(n, params.mean_size), 0)
    # never ask for more groups than can reach the minimum size (a smaller cell keeps one group)
    n_groups = np.where(n > 0, np.clip(np.minimum(n_groups, n // params.min_size), 1, None), 0)
    g_max = max(int(n_groups.max(initial=0)), 1)
    base = np.minimum(params.min_size, n // np.maximum(n_groups, 1))
    extra = n - n_groups * base
    active = np.arange(g_max) < n_groups[..., None]
    conc = _concentration(n, n_groups, extra, params.cv_size)
    shares = rng.standard_gamma(np.where(active, conc[..., None], 1.0)) * active
    # gamma draws with a tiny shape can underflow to 0: fall back to equal shares there
    total = shares.sum(axis=-1, keepdims=True)
    shares = np.where(
        total > 0,
        shares / np.where(total > 0, total, 1.0),
        active / np.maximum(n_groups[..., None], 1),
    )
    shares[..., 0] += ~active.any(axis=-1)  # empty cells: a valid (unused) probability vector
    sizes = np.where(active, base[..., None] + rng.multinomial(extra, shares), 0)
    flat = _cap(sizes.reshape(-1, g_max), active.reshape(-1, g_max), params.max_size)
    return flat.reshape(sizes.shape)


def _concentration(n, n_groups, extra, cv):
    """Per-group Dirichlet parameter giving size CV ``cv`` (Dirichlet-multinomial variance)."""
    g = np.maximum(n_groups, 1).astype(float)
    target_var = (cv * n / g) ** 2
    multinomial_var = extra * (1 / g) * (1 - 1 / g)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = target_var / multinomial_var
        total = (extra - k) / (k - 1)
    total = np.where(k <= 1, 1e9, np.where(k >= extra, 1e-2, total))
    return np.nan_to_num(total, nan=1e9, posinf=1e9) / g


def _cap(sizes: np.ndarray, active: np.ndarray, max_size: int) -> np.ndarray:
    """Move members from groups above ``max_size`` to the smallest active group."""
    over_rows = np.flatnonzero(sizes.max(axis=1, initial=0) > max_size)
    if over_rows.size == 0:
        return sizes
    # only the few cells with an oversized group take part in the loop
    sizes = sizes.copy()
    sizes[over_rows] = _cap_rows(sizes[over_rows], active[over_rows], max_size)
    return sizes


def _cap_rows(sizes: np.ndarray, active: np.ndarray, max_size: int) -> np.ndarray:
    """:func:`_cap` on rows that all need it: one member moved per row and step."""
    sizes = sizes.copy()
    rows = np.arange(len(sizes))
    for _ in range(int(sizes.sum(axis=1).max(initial=0))):
        over = sizes.max(axis=1) > max_size
        if not over.any():
            break
        big = sizes.argmax(axis=1)
        small = np.where(active, sizes, np.iinfo(sizes.dtype).max).argmin(axis=1)
        move = over & (sizes[rows, small] < max_size)
        if not move.any():
            break
        sizes[rows[move], big[move]] -= 1
        sizes[rows[move], small[move]] += 1
    return sizes
