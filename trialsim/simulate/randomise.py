"""Randomisation units (scenario ``[design]``): who is allocated to SFT.

* individual / waitlist: stratified by municipality, a fixed share treated in each; with
  three or more arms each municipality's participants are split over the arms in the
  allocation shares (:func:`trialsim.scenario.arm_counts`);
* cohort: recruitment cohorts (one would-be group each) randomised whole within municipality;
* municipality: whole municipalities randomised (cluster trial);
* stepped-wedge: municipalities switch to SFT at randomly ordered steps; a participant is
  treated when recruited in a period at or after the municipality's step.

A waitlist control is offered SFT after the last visit, so within the trial's visits it is an
individually randomised design; it differs in recruitment (consent), not in the outcome model.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from trialsim.scenario import Scenario, arm_counts
from trialsim.simulate.groups import draw_partition
from trialsim.simulate.layout import Layout


class Arms(NamedTuple):
    treated: np.ndarray  # (B, N) bool: in an active (non-reference) arm
    cluster: np.ndarray  # (B, N) randomised cluster: -1 (individuals), cohort or municipality
    cohort_cell: np.ndarray | None = None  # cohort design: the cell of each cohort id
    arm: np.ndarray | None = None  # (B, N) int8 arm codes (0 = reference); None: = treated

    @property
    def codes(self) -> np.ndarray:
        """(B, N) int8 arm codes (0 = reference arm)."""
        return self.treated.astype(np.int8) if self.arm is None else self.arm


def assign_arms(s: Scenario, layout: Layout, n_reps: int, *, rng: np.random.Generator) -> Arms:
    """Allocate the participants of ``n_reps`` replicates to SFT or control (see module)."""
    unit = s.design.randomisation
    alloc = s.design.allocation_treated
    n, m = layout.n_participants, layout.n_municipalities
    if unit in ("individual", "waitlist") and s.n_arms > 2:
        return _randomise_people_to_arms(s, layout, n_reps, rng=rng)
    if unit in ("individual", "waitlist"):
        # in each municipality the round(n_m * alloc) participants with the smallest uniform
        # draws are treated (a random subset); a partial sort finds the cut-off
        u = rng.random((n_reps, n))
        treated = np.zeros((n_reps, n), dtype=bool)
        n_treated = np.floor(layout.cell_size * alloc + 0.5).astype(int)
        for start, size, k in zip(layout.cell_start, layout.cell_size, n_treated, strict=True):
            if k > 0:
                cell = u[:, start : start + size]
                cut = np.partition(cell, k - 1, axis=1)[:, k - 1 : k]
                treated[:, start : start + size] = cell <= cut
        return Arms(treated, np.full((n_reps, n), -1))
    if unit == "municipality":
        treated_muni = _treated_first(rng.random((n_reps, m)), round(m * alloc))
        cluster = np.broadcast_to(layout.municipality, (n_reps, n)).copy()
        return Arms(treated_muni[:, layout.municipality], cluster)
    if unit == "stepped-wedge":
        steps = s.design.n_steps
        order = np.argsort(rng.random((n_reps, m)), axis=1)
        step = np.empty_like(order)
        np.put_along_axis(step, order, 1 + (np.arange(m) * steps) // m, axis=1)
        treated = layout.period >= step[:, layout.municipality]
        return Arms(treated, np.broadcast_to(layout.municipality, (n_reps, n)).copy())
    if unit == "cohort":
        return _randomise_cohorts(s, layout, n_reps, rng=rng)
    raise ValueError(f"unknown randomisation unit {unit!r}")


def _randomise_people_to_arms(
    s: Scenario, layout: Layout, n_reps: int, *, rng: np.random.Generator
) -> Arms:
    """k arms within each municipality: participants in random order (the ranks of uniform
    draws within the cell) fill arm 1, then arm 2, ..., the rest the reference arm, in the
    numbers of :func:`trialsim.scenario.arm_counts`."""
    n = layout.n_participants
    u = rng.random((n_reps, n))
    counts = arm_counts(layout.cell_size, s.arm_allocation)  # (C, k)
    upto = np.cumsum(counts[:, 1:], axis=1)  # (C, k - 1): ranks below which arms 1..j fall
    arm = np.zeros((n_reps, n), dtype=np.int8)
    for c, (start, size) in enumerate(zip(layout.cell_start, layout.cell_size, strict=True)):
        cell = u[:, start : start + size]
        rank = np.argsort(np.argsort(cell, axis=1), axis=1)
        # arm j > 0 holds ranks in [upto[j-2], upto[j-1]); ranks >= upto[-1] stay reference
        code = np.searchsorted(upto[c], rank, side="right") + 1
        arm[:, start : start + size] = np.where(code < s.n_arms, code, 0)
    return Arms(arm > 0, np.full((n_reps, n), -1), None, arm)


def _treated_first(u: np.ndarray, n_treated) -> np.ndarray:
    """Treat the ``n_treated`` units with the smallest uniforms (a random subset)."""
    rank = np.argsort(np.argsort(u, axis=-1), axis=-1)
    return rank < np.asarray(n_treated)[..., None] if np.ndim(n_treated) else rank < n_treated


def _randomise_cohorts(
    s: Scenario, layout: Layout, n_reps: int, *, rng: np.random.Generator
) -> Arms:
    everyone = np.ones((n_reps, layout.n_participants), dtype=bool)
    cohort, cohort_cell = draw_partition(everyone, layout, s.groups, rng=rng)
    # slots are numbered cell by cell; some are empty: randomise the cohorts that exist
    rows = np.arange(n_reps)[:, None]
    exists = np.zeros((n_reps, len(cohort_cell)), dtype=bool)
    exists[rows, cohort] = True
    n_cells = len(layout.cell_size)
    n_cohorts = np.stack([exists[:, cohort_cell == c].sum(axis=1) for c in range(n_cells)], 1)
    n_treated = np.floor(n_cohorts * s.design.allocation_treated + 0.5).astype(int)
    # within each cell, existing cohorts in random order first, empty slots after them
    u = rng.random((n_reps, len(cohort_cell)))
    key = cohort_cell + np.where(exists, 0.5 * u, 0.75)
    order = np.argsort(key, axis=1)
    first = np.searchsorted(cohort_cell, np.arange(n_cells))
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(len(cohort_cell)) - first[cohort_cell], axis=1)
    cohort_treated = exists & (rank < n_treated[:, cohort_cell])
    treated = np.take_along_axis(cohort_treated, cohort, axis=1)
    return Arms(treated, cohort, cohort_cell)
