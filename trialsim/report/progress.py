"""Feedback on long work: progress bars with ETA, status lines, and the first-run notice.

- :func:`progress_bar` shows a bar with ETA on an interactive stderr. On a first run (numba's
  on-disk cache of the numerical kernels is empty, :func:`cold_kernel_modules`) it also says
  on stderr that the kernels are being compiled, once per machine, so a bar sitting at 0 % for
  ~20 s is explained.
- :func:`track` iterates with a bar of its own; inside an active :func:`progress_bar` it adds
  a second bar to the same display (rich allows one live display at a time).
- :func:`status` prints one line on stderr before slow work with no natural count (building
  and compiling a PyMC model), and a spinner while it runs.

Like the bars, the notice and the status line appear only when stderr is a terminal, so
scripts, pipes and captured output (``--format json``) see nothing extra.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
COMPILE_NOTICE = "compiling numerical kernels, once per machine, about 20 s"
# a decorator or options line (not prose) turning numba's on-disk cache on
_CACHED = re.compile(r"^\s*[@\w][^#\n]*\bcache[\"']?\s*[=:]\s*True", re.M)
_ACTIVE: list = []  # the rich Progress currently on screen, if any
_NOTICE_SHOWN: list[bool] = []


def kernel_modules(root: str | Path = PACKAGE_ROOT) -> list[Path]:
    """Source files under ``root`` holding numba kernels cached on disk (a ``jit`` decorator
    or options line with ``cache=True``)."""
    out = []
    for path in sorted(Path(root).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if any("jit" in m.group(0).lower() for m in _CACHED.finditer(text)):
            out.append(path)
    return out


#: the modules :func:`kernel_modules` finds in trialsim (a test keeps the two in step); listed
#: so the first-run check is a few directory listings, not a read of every source file
KERNEL_MODULES = (
    "analyse/lmm.py",
    "analyse/prepare.py",
    "analyse/reml_kernels.py",
    "simulate/attendance.py",
    "simulate/outcomes.py",
)


def cold_kernel_modules(
    root: str | Path = PACKAGE_ROOT, modules: tuple[str, ...] | None = None
) -> list[Path]:
    """Kernel modules with no numba cache index yet (``<module>.<kernel>-<line>.pyXY.nbi`` in
    ``__pycache__`` beside the file, or anywhere under ``NUMBA_CACHE_DIR`` when that is set).

    ``modules`` are paths under ``root`` (default :data:`KERNEL_MODULES` for the package,
    else every module :func:`kernel_modules` finds). Cheap (a directory listing per module); an
    index whose source has since changed counts as warm, so the notice may be missed after an
    upgrade, never shown needlessly.
    """
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    cold = []
    root = Path(root)
    if modules is None and root == PACKAGE_ROOT:
        modules = KERNEL_MODULES
    paths = kernel_modules(root) if modules is None else [root / m for m in modules]
    for module in paths:
        pattern = f"{module.stem}.*.{tag}.nbi"
        if cache_dir:
            found = any(Path(cache_dir).rglob(pattern))
        else:
            found = any((module.parent / "__pycache__").glob(pattern))
        if not found:
            cold.append(module)
    return cold


def compile_notice(*, root: str | Path = PACKAGE_ROOT, stream=None) -> bool:
    """Print :data:`COMPILE_NOTICE` on a terminal stderr (once per process) on a first run:
    no kernel module has a cache index yet (a partly warm cache, e.g. kernels of an analysis
    not used so far, compiles in a few seconds without a word); True if it was printed."""
    stream = stream or sys.stderr
    if _NOTICE_SHOWN or not _isatty(stream):
        return False
    root = Path(root)
    modules = KERNEL_MODULES if root == PACKAGE_ROOT else None
    cold = cold_kernel_modules(root, modules)
    n_modules = len(modules) if modules is not None else len(kernel_modules(root))
    if not cold or len(cold) < n_modules:
        return False
    _NOTICE_SHOWN.append(True)
    print(COMPILE_NOTICE, file=stream, flush=True)
    return True


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _columns():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "ETA",
        TimeRemainingColumn(),
    )


@contextmanager
def progress_bar(
    total: int, description: str, *, kernels: bool = True
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a bar with ETA on an interactive stderr, nothing otherwise.

    ``advance`` is thread-safe (the simulator calls it from worker threads). With ``kernels``
    (work that runs the numba kernels) a cold kernel cache is announced first.
    """
    cold = kernels and compile_notice()
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import Progress

    lock = threading.Lock()
    first = f"{description} (compiling kernels first)" if cold else description
    with Progress(*_columns(), transient=True, console=_stderr_console()) as progress:
        task = progress.add_task(first, total=total)
        _ACTIVE.append(progress)
        started = [False]

        def advance(n: int) -> None:
            with lock:
                if not started[0]:
                    started[0] = True
                    progress.update(task, description=description)
                progress.advance(task, n)

        try:
            yield advance
        finally:
            _ACTIVE.remove(progress)


def track(items: Iterable, description: str, *, total: int | None = None) -> Iterator:
    """Iterate over ``items`` with a moving bar on an interactive stderr (a second bar inside an
    active :func:`progress_bar`, e.g. the MCMC check after the simulations of ``assurance``)."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    total = len(items) if total is None else total
    if not sys.stderr.isatty():
        yield from items
        return
    if _ACTIVE:
        progress = _ACTIVE[-1]
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task, 1)
        return
    from rich.progress import Progress

    with Progress(*_columns(), transient=True, console=_stderr_console()) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task, 1)


@contextmanager
def status(message: str, *, stream=None) -> Iterator[None]:
    """On a terminal: one line on stderr saying what slow work is under way (``message``) and a
    spinner while it runs. Nothing when stderr is not a terminal (like the progress bars)."""
    stream = stream or sys.stderr
    if not _isatty(stream):  # scripts and captured output stay clean, as with the bars
        yield
        return
    if _ACTIVE:
        print(message, file=stream, flush=True)
        yield
        return
    from rich.console import Console

    console = Console(file=stream)
    console.print(message, highlight=False, soft_wrap=True)
    with console.status(f"{message.split(':')[0]} ...", spinner="dots"):
        yield


def sampling_message(*, chains: int, draws: int, tune: int, sampler: str = "NUTS") -> str:
    """The status line while PyMC builds, compiles and samples a model."""
    return (
        f"sampling the posterior ({sampler}): building and compiling the model, then {chains} "
        f"chains x {draws:,} draws after {tune:,} tuning steps"
    )
