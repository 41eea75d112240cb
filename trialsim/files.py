"""Writing output files atomically, and the provenance facts every output carries.

An output is written under a temporary name in its own folder and renamed over the target
only when complete, so an interrupted run never leaves half a file (and a failed one leaves
the old file as it was). The temporary is removed on an error, SIGINT or SIGTERM; one left by
a killed process (SIGKILL) carries that process's id in its name and is removed by the next
write to the same path. A path the user can fix (no space, no permission, a folder in the
way, a /proc path) raises :class:`trialsim.errors.OutputError` with one line.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from trialsim.errors import OutputError, UserError, os_error_message

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")

#: CSV dialects trialsim writes (``--csv-dialect``): separator and decimal mark. ``semicolon``
#: is what a Danish or other European Excel opens (``;`` between fields, ``1,5``); trialsim's
#: reader (:func:`trialsim.io.readers.sniff_dialect`) reads both.
CSV_DIALECTS = {"comma": (",", "."), "semicolon": (";", ",")}

#: a write is refused up front when its folder has less free space than this
MIN_FREE_BYTES = 1 << 20
_TMP_TAG = ".tmp-"


def _temp_prefix(path: Path, pid: int | None = None) -> str:
    return f".{path.stem}{_TMP_TAG}{os.getpid() if pid is None else pid}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete temporaries of ``path`` left by processes that no longer run (SIGKILL)."""
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{path.stem}{_TMP_TAG}*-*{path.suffix}"))
    except OSError:
        return removed
    for tmp in candidates:
        pid_text = tmp.name[len(f".{path.stem}{_TMP_TAG}") :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        try:
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed.append(tmp)
        except OSError:
            continue
    return removed


def check_writable(path: str | Path) -> Path:
    """``path`` if a file can be written there; else :class:`OutputError` with one line (a
    folder in the way, a parent that is a file, no permission, no space, a /proc path)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(_os_line(exc, parent)) from None
    if not parent.is_dir():
        raise OutputError(f"{parent}: is not a folder; check the path of {path.name}")
    real = str(parent.resolve())
    if real == "/proc" or real.startswith(("/proc/", "/sys/", "/dev/")) or real in ("/sys", "/dev"):
        raise OutputError(f"{path}: {real} is not an ordinary folder; choose another one")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: permission denied; choose a folder you can write to")
    try:
        st = os.statvfs(parent)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if free is not None and free < MIN_FREE_BYTES:
        raise OutputError(
            f"{path}: only {free // 1024} KiB free on its device; free some space or choose "
            "another folder"
        )
    return path


def _os_line(exc: OSError, path) -> str:
    return os_error_message(exc, path) or f"{path}: cannot write: {exc.strerror or exc}"


class _TermAsInterrupt:
    """While writing, SIGTERM raises SystemExit(143) in the main thread so that the
    temporaries are removed (the default action would end the process on the spot)."""

    depth = 0
    previous = None
    lock = threading.Lock()

    @classmethod
    def enter(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls.lock:
            if cls.depth == 0:
                try:
                    cls.previous = signal.signal(signal.SIGTERM, cls._handler)
                except (ValueError, OSError):
                    return
            cls.depth += 1

    @classmethod
    def exit(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls.lock:
            if cls.depth == 0:
                return
            cls.depth -= 1
            if cls.depth == 0:
                signal.signal(signal.SIGTERM, cls.previous or signal.SIG_DFL)

    @staticmethod
    def _handler(signum, frame):
        raise SystemExit(128 + signum)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` if the block ends
    normally (as an ordinary 0644 file), deleted if it raises or on SIGINT/SIGTERM.

    >>> with atomic_path("out.parquet") as tmp:  # doctest: +SKIP
    ...     frame.to_parquet(tmp)
    """
    path = check_writable(path)
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(_os_line(exc, path)) from None
    os.close(fd)
    _TermAsInterrupt.enter()
    try:
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
            os.replace(tmp, path)
        except OSError as exc:
            message = os_error_message(exc, path)
            if message is None:
                raise
            raise OutputError(message) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _TermAsInterrupt.exit()


def _decimal_text(value, decimal: str):
    """A float in a text (object) column with the dialect's decimal mark."""
    if isinstance(value, float | np.floating) and not isinstance(value, bool):
        return repr(float(value)).replace(".", decimal)
    return value


def csv_text(frame, *, dialect: str = "comma", float_format: str | None = None) -> str:
    """``frame`` as CSV text in ``dialect`` (see :data:`CSV_DIALECTS`): one header row, no
    index, empty cells for missing values; numbers in text columns get the decimal mark too."""
    buffer = io.StringIO()
    write_csv_frame(frame, buffer, dialect=dialect, float_format=float_format)
    return buffer.getvalue()


def write_csv_frame(
    frame, handle, *, dialect: str = "comma", header: bool = True, float_format: str | None = None
) -> None:
    """Write ``frame`` as CSV in ``dialect`` to an open text handle or a path (not atomic:
    callers write to :func:`atomic_path`'s temporary)."""
    if dialect not in CSV_DIALECTS:
        raise UserError(f"--csv-dialect {dialect}: choose one of {', '.join(CSV_DIALECTS)}")
    sep, decimal = CSV_DIALECTS[dialect]
    if decimal != ".":
        frame = frame.copy()
        for name in frame.columns:
            if frame[name].dtype == object:
                frame[name] = frame[name].map(lambda v: _decimal_text(v, decimal))
    frame.to_csv(
        handle,
        index=False,
        na_rep="",
        header=header,
        sep=sep,
        decimal=decimal,
        float_format=float_format,
    )


def write_csv(
    frame, path: str | Path, *, dialect: str = "comma", float_format: str | None = None
) -> Path:
    """Write ``frame`` as a CSV file in ``dialect``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            write_csv_frame(frame, handle, dialect=dialect, float_format=float_format)
    return Path(path)


def read_csv_table(path: str | Path):
    """A CSV table trialsim wrote, in either dialect (the separator and decimal mark are
    detected as for trial data)."""
    import pandas as pd

    from trialsim.io.readers import sniff_dialect

    with open(path, encoding="utf-8-sig") as handle:
        sample = handle.read(65536)
    sep, decimal = sniff_dialect(sample)
    return pd.read_csv(path, sep=sep, decimal=decimal, encoding="utf-8-sig")


@contextmanager
def table_writer(
    path: str | Path,
    *,
    metadata: dict[bytes, bytes] | None = None,
    csv_dialect: str = "comma",
) -> Iterator:
    """Write a table in chunks, atomically: ``write(frame)`` appends rows (CSV: the header
    once; Parquet: one row group per chunk with the first chunk's schema, plus ``metadata``
    in the schema's metadata; ``csv_dialect`` as in :data:`CSV_DIALECTS`). Memory is one
    chunk; the bytes of a CSV equal those of the whole table written at once.

    >>> with table_writer("sim.parquet") as write:  # doctest: +SKIP
    ...     for frame in chunks:
    ...         write(frame)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UserError(f"{path}: output must end in .csv or .parquet")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                first = [True]

                def write_chunk(frame) -> None:
                    write_csv_frame(frame, handle, dialect=csv_dialect, header=first[0])
                    first[0] = False

                yield write_chunk
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            state: dict = {}

            def write_parquet(frame) -> None:
                if "writer" not in state:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    schema = table.schema.with_metadata(
                        {**(table.schema.metadata or {}), **(metadata or {})}
                    )
                    state["writer"] = pq.ParquetWriter(tmp, schema)
                table = pa.Table.from_pandas(
                    frame, schema=state["writer"].schema, preserve_index=False
                )
                state["writer"].write_table(table)

            try:
                yield write_parquet
            finally:
                if "writer" in state:
                    state["writer"].close()


def write_table_chunks(
    path: str | Path,
    frames: Iterable,
    *,
    metadata: dict[bytes, bytes] | None = None,
    csv_dialect: str = "comma",
) -> int:
    """Write every frame of ``frames`` (an iterator: one in memory at a time) to one CSV or
    Parquet table, atomically; the number of rows written."""
    rows = 0
    with table_writer(path, metadata=metadata, csv_dialect=csv_dialect) as write:
        for frame in frames:
            write(frame)
            rows += len(frame)
    return rows


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(path, text.encode("utf-8"))


def json_default(value):
    """``json.dumps`` fallback: numpy scalars and arrays, tuples and paths as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | tuple):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def to_json(obj) -> str:
    """Indented JSON text of ``obj`` (numpy values allowed)."""
    return json.dumps(obj, indent=2, default=json_default)


def write_json(path: str | Path, obj) -> Path:
    """Write JSON atomically (numpy values allowed)."""
    return write_text(path, to_json(obj) + "\n")


def check_figure_path(path: str | Path) -> Path:
    """``path`` if it names a figure format trialsim writes, else a ValueError saying which."""
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"{path}: a plot must end in {', '.join(FIGURE_SUFFIXES)}")
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Python's version and each named package's (``"not installed"`` when absent)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
