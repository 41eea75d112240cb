"""Writing output files atomically, and the provenance facts every output carries.

An output is written under a temporary name in its own folder and renamed over the target
only when complete, so an interrupted run never leaves half a file (and a failed one leaves
the old file as it was).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` if the block ends
    normally (as an ordinary 0644 file), deleted if it raises.

    >>> with atomic_path("out.parquet") as tmp:  # doctest: +SKIP
    ...     frame.to_parquet(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        raise ValueError(f"{path}: a plot must end in {', '.join(FIGURE_SUFFIXES)}")
    return path


def save_figure(fig, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = check_figure_path(path)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=path.suffix.lower().lstrip("."), dpi=dpi)
    finally:
        plt.close(fig)
    return write_bytes(path, buffer.getvalue())


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
