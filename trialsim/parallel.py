"""Ordered map over threads: numpy releases the GIL in its random generators and array
kernels, so blocks of replicates run in parallel on one machine's cores without copying."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def thread_count(threads: int | None) -> int:
    """``threads``, or one per core when None."""
    return max(1, threads or os.cpu_count() or 1)


def map_in_threads(fn: Callable[[T], R], items: Iterable[T], threads: int | None) -> Iterator[R]:
    """``fn`` over ``items`` on up to ``threads`` threads (default: one per core), yielding
    results in the order of ``items``. Results depend only on the items, never on the thread
    count. On an error or interrupt the queued items are cancelled, not run."""
    items = list(items)
    n_threads = min(thread_count(threads), len(items))
    if n_threads <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(n_threads)
    try:
        yield from pool.map(fn, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
