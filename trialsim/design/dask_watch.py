"""Dask worker preload: a worker of a ``LocalCluster`` started by trialsim exits with it.

trialsim starts its throw-away cluster with ``preload=["trialsim.design.dask_watch"]`` and the
parent's process id in ``TRIALSIM_PARENT_PID``; Dask imports this module in each worker
process and calls :func:`dask_setup`, which starts the same parent watch as the local process
pool's workers (:func:`trialsim.design.executors.watch_parent`). The scheduler and the nannies
of a ``LocalCluster`` live in the trialsim process itself, so once its workers watch it,
nothing survives a SIGKILL of trialsim. Workers of an external ``--scheduler`` are not
trialsim's: they are started, watched and stopped by whoever runs that cluster.
"""

from __future__ import annotations

import os

#: environment variable carrying the trialsim process id to its Dask workers
PARENT_PID_VARIABLE = "TRIALSIM_PARENT_PID"


def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload signature
    """Dask preload hook: watch the trialsim process named in ``TRIALSIM_PARENT_PID``."""
    from trialsim.design.executors import watch_parent

    text = os.environ.get(PARENT_PID_VARIABLE, "")
    if text.isdigit():
        watch_parent(int(text))
