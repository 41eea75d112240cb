"""Group formation while people wait (``[sites.recruitment]``), batched over replicates.

The candidates of one recruitment stream (the treated participants of a municipality, or all
its recruits when cohorts are randomised) join the group in formation in the order they are
recruited. Each candidate disappears at an individual loss time. A group

* starts as soon as ``start_size`` of its members are still waiting (at that member's
  recruitment time);
* otherwise, ``max_wait_months`` after it opened, starts with the members still waiting if
  they are at least ``cancel_below``, or is cancelled. The members of a cancelled group move
  to the next group, which opens at the cancellation; when no further candidates will come
  they are left without a group ("not offered a group").

Members who disappear before their group starts are lost before start. The loop runs over
groups in formation (a handful per municipality); every step is an array operation over the
replicate axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ROUNDS = 100_000  # safety bound; each round starts, cancels or empties a group


@dataclass(frozen=True)
class FormedGroups:
    """Outcome of group formation for B replicates of n candidates (arrays (B, n) or (B, K))."""

    group: np.ndarray  # (B, n) local index of the started group joined, -1 if none
    waited_for: np.ndarray  # (B, n) started group a member waited for (also if lost), else -1
    start_month: np.ndarray  # (B, n) start of the member's group, NaN if none
    lost: np.ndarray  # (B, n) bool: disappeared before the group started
    not_offered: np.ndarray  # (B, n) bool: still waiting when the last group was cancelled
    group_start_month: np.ndarray  # (B, n) start month of started group k, NaN padding
    group_size: np.ndarray  # (B, n) members at the start of group k
    cancel_month: np.ndarray  # (B, C) months of cancellations, NaN padding

    @property
    def n_started(self) -> np.ndarray:
        return np.sum(np.isfinite(self.group_start_month), axis=1)

    @property
    def n_cancelled(self) -> np.ndarray:
        return np.sum(np.isfinite(self.cancel_month), axis=1)


def form_groups(
    join_month: np.ndarray,
    candidate: np.ndarray,
    loss_month: np.ndarray,
    *,
    start_size: int,
    cancel_below: int,
    max_wait_months: float,
) -> FormedGroups:
    """Form groups from candidates recruited at ``join_month`` (B, n), non-decreasing per row.

    ``loss_month`` (B, n) is when each candidate would disappear (``inf``: never). Returns a
    :class:`FormedGroups`. Non-candidates (``candidate`` False) are left untouched (-1/NaN).
    """
    b, n = join_month.shape
    rows = np.arange(b)
    idx = np.arange(n)
    earlier_or_same = idx[None, :] <= idx[:, None]  # [j, i]: i joined no later than j
    join = np.array(join_month, dtype=float)
    pending = np.array(candidate, dtype=bool)
    group = np.full((b, n), -1)
    waited_for = np.full((b, n), -1)
    start = np.full((b, n), np.nan)
    lost = np.zeros((b, n), dtype=bool)
    not_offered = np.zeros((b, n), dtype=bool)
    group_start = np.full((b, max(n, 1)), np.nan)
    group_size = np.zeros((b, max(n, 1)), dtype=int)
    n_started = np.zeros(b, dtype=int)
    cancels: list[np.ndarray] = []
    for _ in range(MAX_ROUNDS):
        has = pending.any(axis=1)
        if not has.any():
            break
        first = np.argmax(pending, axis=1)
        deadline = join[rows, first] + max_wait_months
        # members still waiting when candidate j joins: pending i <= j not yet lost at join_j
        waiting = (
            pending[:, None, :]
            & earlier_or_same[None, :, :]
            & (loss_month[:, None, :] > join[:, :, None])
        )
        reach = pending & (join <= deadline[:, None]) & (waiting.sum(axis=2) >= start_size)
        filled = reach.any(axis=1)
        j_fill = np.argmax(reach, axis=1)
        when = np.where(filled, join[rows, j_fill], deadline)
        members = pending & np.where(
            filled[:, None], idx[None, :] <= j_fill[:, None], join <= deadline[:, None]
        )
        gone = members & (loss_month <= when[:, None])
        present = members & ~gone
        n_present = present.sum(axis=1)
        starts = has & (filled | (n_present >= cancel_below))
        cancelled = has & ~starts
        more_to_come = (pending & ~members).any(axis=1)

        gid = np.broadcast_to(n_started[:, None], (b, n))
        joined = present & starts[:, None]
        group = np.where(joined, gid, group)
        waited_for = np.where(members & starts[:, None], gid, waited_for)
        start = np.where(joined, when[:, None], start)
        group_start[rows[starts], n_started[starts]] = when[starts]
        group_size[rows[starts], n_started[starts]] = n_present[starts]
        n_started = n_started + starts
        lost |= gone

        carried = present & (cancelled & more_to_come)[:, None]
        join = np.where(carried, when[:, None], join)  # the next group opens at cancellation
        dropped = present & (cancelled & ~more_to_come)[:, None]
        not_offered |= dropped
        cancels.append(np.where(cancelled, when, np.nan))
        pending &= ~(gone | joined | dropped)
    else:  # pragma: no cover - guarded by the finite number of candidates and time
        raise RuntimeError("group formation did not finish; check max_wait_months")
    cancel_month = np.stack(cancels, axis=1) if cancels else np.full((b, 0), np.nan)
    cancel_month = cancel_month[:, np.isfinite(cancel_month).any(axis=0)]
    return FormedGroups(
        group=group,
        waited_for=waited_for,
        start_month=start,
        lost=lost,
        not_offered=not_offered,
        group_start_month=group_start,
        group_size=group_size,
        cancel_month=cancel_month,
    )
