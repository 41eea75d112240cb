"""The fixed layout of participants: who belongs to which municipality and period.

Participants are ordered by municipality (then by period in a stepped wedge), which is also
their order of recruitment. The layout is the same in every replicate; only the random parts
(arms, groups, outcomes) vary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialsim.scenario import Scenario


@dataclass(frozen=True)
class Layout:
    municipality: np.ndarray  # (N,) municipality index 0..M-1, non-decreasing
    period: np.ndarray  # (N,) period index (stepped wedge), else 0
    cell: np.ndarray  # (N,) municipality x period cell, non-decreasing
    cell_start: np.ndarray  # (C,) first participant of each cell
    cell_size: np.ndarray  # (C,) participants per cell
    cell_municipality: np.ndarray  # (C,)
    n_periods: int

    @property
    def n_participants(self) -> int:
        return len(self.municipality)

    @property
    def n_municipalities(self) -> int:
        return int(self.municipality.max()) + 1


def build_layout(s: Scenario) -> Layout:
    n_per_muni = np.asarray(s.sites.participants)
    municipality = np.repeat(np.arange(len(n_per_muni)), n_per_muni)
    n_periods = s.structure.n_periods
    # split each municipality's participants as evenly as possible over the periods
    within = np.concatenate([np.arange(n) for n in n_per_muni])
    period = (within * n_periods) // np.repeat(n_per_muni, n_per_muni)
    cell = municipality * n_periods + period
    cell_size = np.bincount(cell, minlength=len(n_per_muni) * n_periods)
    cell_start = np.concatenate([[0], np.cumsum(cell_size)[:-1]])
    return Layout(
        municipality=municipality,
        period=period,
        cell=cell,
        cell_start=cell_start,
        cell_size=cell_size,
        cell_municipality=np.arange(len(cell_size)) // n_periods,
        n_periods=n_periods,
    )
