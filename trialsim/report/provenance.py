"""Provenance of an output folder: what produced it, from which scenario, with which seed.

Every command that writes a results folder calls :func:`write_provenance`, which leaves
``DIR/provenance.json``; ``trialsim report DIR`` reads it. Files are written atomically (a
temporary name, then a rename) so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

#: Packages whose versions change numbers in trialsim's outputs.
PACKAGES = (
    "trialsim",
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "pydantic",
    "matplotlib",
    "pyarrow",
    "dask",
    "distributed",
)

PROVENANCE_FILE = "provenance.json"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` when absent), and Python's."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the scenario file as written, comments included)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def command_line(argv: list[str] | None = None) -> str:
    """The command line that is running, shell-quoted (``trialsim ...`` for the CLI)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("trialsim", "__main__.py"):
        argv[0] = "trialsim"
    return shlex.join(argv)


def build_provenance(
    *,
    command: str,
    scenario_path: str | Path | None = None,
    scenario=None,
    seed: int | None = None,
    argv: list[str] | None = None,
    **extra,
) -> dict:
    """A JSON-ready record of how an output was made.

    Parameters
    ----------
    command : the trialsim command (``"compare"``, ``"sweep"``, ...).
    scenario_path : the scenario file; its byte hash is recorded.
    scenario : the validated :class:`~trialsim.scenario.Scenario` actually used (after
        ``--set`` overrides); its :meth:`~trialsim.scenario.Scenario.digest` is recorded.
    seed : the root seed.
    argv : the command line (default ``sys.argv``).
    extra : further settings (replicates, analyses, grid ...), stored under ``settings``.
    """
    record = {
        "command": command,
        "command_line": command_line(argv),
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "packages": package_versions(),
        "platform": f"{platform.system()} {platform.machine()}",
    }
    if scenario_path is not None:
        record["scenario_file"] = str(scenario_path)
        record["scenario_file_sha256"] = file_sha256(scenario_path)
    if scenario is not None:
        record["scenario"] = scenario.name
        record["scenario_sha256"] = scenario.digest()
    record["settings"] = extra
    return record


def write_provenance(directory: str | Path, record: dict) -> Path:
    """Write ``record`` to ``directory/provenance.json`` atomically."""
    return write_json(Path(directory) / PROVENANCE_FILE, record)


def read_provenance(directory: str | Path) -> dict | None:
    """The provenance record of a folder, or None if it has none."""
    path = Path(directory) / PROVENANCE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# ---- atomic writers shared by the commands ---------------------------------------------------


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (temporary file in the same folder, then ``os.replace``)."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically (temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    """Write JSON atomically; numpy scalars and arrays become plain numbers and lists."""
    return write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def save_figure(fig, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (PNG or SVG by suffix) and close it."""
    import io

    import matplotlib.pyplot as plt

    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())
