"""The project's error types and how an unexpected error is reported.

* :class:`UserError` - input the user can fix (a scenario key, a data column, an option, an
  output path), raised where that input is validated. Its message is one line: what, where,
  how to fix. The command line prints it as ``error: ...`` and exits with code 2. It
  subclasses ``ValueError`` on purpose: a library caller (a notebook, a test with
  ``pytest.raises(ValueError)``) that catches ``ValueError`` for a bad argument keeps
  working, while the command line tells the two apart by type, never by where the error was
  raised.
* :class:`OutputError` - an output that cannot be written (no space, no permission, a folder
  in the way): also the user's to fix, exit 2.
* :class:`ResourceError` - a request larger than this machine (memory): exit 2, with the
  estimate and how to proceed.
* anything else is an internal error: exit 1, one line, the traceback in a log file
  (:func:`log_internal_error`) and a hint to report it. That includes a plain ``ValueError``
  or ``TypeError`` raised by trialsim itself: those are kept for programming contracts that
  no user input reaches through the command line (array shapes handed to the fitting
  engines, names the command line offers as a fixed choice, replicate indices). The
  scenario's pydantic validators are the one exception: they raise ``ValueError`` because
  that is pydantic's protocol, and pydantic's error becomes a
  :class:`~trialsim.scenario.ScenarioError` (a UserError) naming the file and key.
"""

from __future__ import annotations

import datetime
import errno
import os
import traceback
from pathlib import Path


class UserError(ValueError):
    """Bad input the user can fix; ``str()`` is one line saying what, where and how."""


class OutputError(UserError):
    """An output path that cannot be written."""


class ResourceError(UserError):
    """A request that needs more memory than this machine (or ``--max-memory``) allows."""


#: errno values of an output/input path the user can fix
USER_ERRNOS = {
    errno.ENOSPC: "no space left on the device; free some space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EROFS: "read-only file system; choose a folder you can write to",
    errno.EISDIR: "is a directory; give a file name",
    errno.ENOTDIR: "a part of the path is not a folder; check the path",
    errno.EEXIST: "already exists and is in the way; remove it or choose another name",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENAMETOOLONG: "file name too long; choose a shorter one",
    errno.EINVAL: "invalid argument for this file system (e.g. a /proc or /sys path); "
    "choose an ordinary folder",
    errno.EXDEV: "cannot move across file systems; choose another folder",
    errno.ELOOP: "too many symbolic links; check the path",
}


def os_error_message(exc: OSError, path: str | os.PathLike | None = None) -> str | None:
    """One line for an OSError the user can fix (full disk, permission, a folder in the way,
    a /proc path), naming the file; None for any other OSError."""
    hint = USER_ERRNOS.get(exc.errno)
    if hint is None:
        return None
    where = path if path is not None else (exc.filename or "output")
    return f"{where}: {hint}"


def state_dir() -> Path:
    """Where trialsim keeps its error logs: ``$XDG_STATE_HOME/trialsim`` (default
    ``~/.local/state/trialsim``); a temporary folder when neither can be written."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "trialsim"


def log_internal_error(exc: BaseException, argv: list[str] | None = None) -> Path | None:
    """Write ``exc``'s traceback (with the command line and versions) to a new log file
    under :func:`state_dir` ``/errors``; its path, or None when no folder is writable."""
    import platform
    import sys
    import tempfile

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = "".join(
        [
            f"trialsim internal error, {datetime.datetime.now().isoformat(timespec='seconds')}\n",
            f"command: {' '.join(argv if argv is not None else sys.argv)}\n",
            f"python {platform.python_version()} on {platform.platform()}\n",
            f"trialsim {_version()}\n\n",
            *traceback.format_exception(type(exc), exc, exc.__traceback__),
        ]
    )
    for folder in (state_dir() / "errors", Path(tempfile.gettempdir()) / "trialsim-errors"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"error-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("trialsim")
    except metadata.PackageNotFoundError:
        return "unknown"


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def internal_summary(exc: BaseException, log: Path | None) -> str:
    """The one line printed for an internal error."""
    where = f"; details in {log}" if log is not None else ""
    return (
        f"internal error: {type(exc).__name__}: {one_line(exc)}{where}; this is a bug in "
        "trialsim: please report it with that file"
    )
