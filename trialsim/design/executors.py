"""Where sweep cells run: in this process, a local process pool, or a Dask cluster.

All three take a module-level function ``fn(task, progress)`` and a list of picklable tasks,
and yield ``(index, result)`` as tasks finish (in any order). Results never depend on the
executor: every task carries its own seed (:func:`trialsim.design.grid.cell_seed`).

* ``local`` with ``jobs=1``: in-process, replicate-level progress.
* ``local`` with ``jobs>1``: :class:`concurrent.futures.ProcessPoolExecutor` with the
  ``spawn`` start method (safe with threads and on every OS); workers report replicate
  progress through a manager queue.
* ``dask``: a :class:`distributed.Client` connected to ``scheduler`` (``tcp://host:8786``),
  or, without one, a throw-away ``LocalCluster`` of ``jobs`` single-threaded worker
  processes. Progress is counted per finished cell. Workers need the same trialsim version
  installed; results come back to this process, which writes the cell files, so workers need
  no shared file system. The throw-away ``LocalCluster`` is this process's: its scheduler and
  nannies run here and its workers watch this process (:mod:`trialsim.design.dask_watch`),
  so they exit with it, SIGKILL included. The workers of an external ``scheduler`` are not
  trialsim's: whoever started that cluster starts, watches and stops them.

Running on an existing cluster (the scheduler address is all trialsim needs):

* SLURM with dask-jobqueue, from a login node::

      from dask_jobqueue import SLURMCluster
      cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00")
      cluster.scale(jobs=32)             # 32 SLURM jobs, one worker each
      print(cluster.scheduler_address)   # -> trialsim sweep ... --executor dask --scheduler ...

  or by hand: ``dask scheduler`` on the login node and ``srun dask worker tcp://HOST:8786
  --nthreads 1`` in a batch job.
* Kubernetes: install the Dask Helm chart (``helm install dask dask/dask``) with an image that
  has trialsim installed, and pass the scheduler service, e.g. ``tcp://dask-scheduler:8786``.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as _queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing.managers import SyncManager

from trialsim.errors import UserError

EXECUTORS = ("local", "dask")

Progress = Callable[[int], None] | None


def run_tasks(
    fn: Callable,
    tasks: Sequence,
    *,
    jobs: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    progress: Progress = None,
    units_per_task: int = 1,
) -> Iterator[tuple[int, object]]:
    """Run ``fn(task, progress)`` for every task; yield ``(index, result)`` as each finishes.

    ``units_per_task`` is what one task counts for in ``progress`` when the executor cannot
    report finer progress (Dask).
    """
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    if not tasks:
        return
    if executor == "dask":
        yield from _run_dask(fn, tasks, jobs, scheduler, progress, units_per_task)
    elif jobs == 1:
        for i, task in enumerate(tasks):
            yield i, fn(task, progress)
    else:
        yield from _run_pool(fn, tasks, jobs, progress)


def _one_blas_thread() -> None:
    """One BLAS thread per worker process, so J workers use J cores instead of
    oversubscribing them (numpy's OpenBLAS starts one thread per core)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl the workers keep BLAS's default
        return
    threadpool_limits(1)


#: seconds between a worker's checks that its parent is still alive
PARENT_POLL_SECONDS = 0.2


def watch_parent(parent_pid: int, poll: float = PARENT_POLL_SECONDS) -> threading.Thread:
    """Start a daemon thread that ends this process as soon as ``parent_pid`` is no longer
    its parent (the parent was killed, even by SIGKILL, and this process was re-parented):
    no worker outlives the command that started it."""

    _die_with_parent()

    def watch() -> None:
        _name_os_thread(WATCH_THREAD_NAME)
        while os.getppid() == parent_pid:  # the parent may have died before prctl
            time.sleep(poll)
        os._exit(1)

    thread = threading.Thread(target=watch, name="trialsim-parent-watch", daemon=True)
    thread.start()
    return thread


#: the watching thread's name as the system shows it (``ps -L``, /proc/PID/task/TID/comm)
WATCH_THREAD_NAME = "trialsim-watch"


def _name_os_thread(name: str) -> None:
    """Linux: give the calling thread ``name`` (at most 15 bytes) in the process table, so a
    worker's parent watch can be seen from outside."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_name = 15
        ctypes.CDLL(None).prctl(pr_set_name, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        return


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (immediate, even
    while a compiled kernel holds the GIL and the watching thread cannot run)."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return


def _worker_init(parent_pid: int) -> None:
    """Worker initializer: die with the parent, one BLAS thread."""
    watch_parent(parent_pid)
    _one_blas_thread()


def _report_to_queue(fn: Callable, task, sink) -> object:
    """Worker side of the process pool: forward replicate progress through the queue."""
    return fn(task, sink.put if sink is not None else None)


def _run_pool(fn, tasks, jobs, progress) -> Iterator[tuple[int, object]]:
    ctx = multiprocessing.get_context("spawn")
    manager = None
    if progress is not None:
        manager = SyncManager(ctx=ctx)
        manager.start(watch_parent, (os.getpid(),))  # the manager dies with us too
    sink = manager.Queue() if manager is not None else None
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set() or not sink.empty():
            try:
                progress(sink.get(timeout=0.1))
            except _queue.Empty:
                continue
            except (EOFError, OSError):  # manager gone at shutdown
                return

    reader = threading.Thread(target=drain, daemon=True) if sink is not None else None
    if reader is not None:
        reader.start()
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)),
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    try:
        futures = {pool.submit(_report_to_queue, fn, t, sink): i for i, t in enumerate(tasks)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield futures[future], future.result()
    finally:
        # on an interrupt, drop queued cells; finished ones are already yielded and saved
        pool.shutdown(wait=True, cancel_futures=True)
        stop.set()
        if reader is not None:
            reader.join()
        if manager is not None:
            manager.shutdown()


def _run_dask(fn, tasks, jobs, scheduler, progress, units) -> Iterator[tuple[int, object]]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="20s")
    else:
        from trialsim.design.dask_watch import PARENT_PID_VARIABLE

        cluster = LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # the workers exit when this process dies, even by SIGKILL (no orphans)
            preload=["trialsim.design.dask_watch"],
            env={PARENT_PID_VARIABLE: str(os.getpid())},
        )
        client = Client(cluster)
    try:
        futures = [client.submit(fn, t, None, pure=False) for t in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in as_completed(futures):
                result = future.result()
                if progress is not None:
                    progress(units)
                yield index[future.key], result
        finally:
            client.cancel(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
