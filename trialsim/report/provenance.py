"""Provenance of an output folder: what produced it, from which scenario, with which seed.

Every command that writes a results folder calls :func:`write_provenance`, which leaves
``DIR/provenance.json``; ``trialsim report DIR`` reads it. Files are written atomically (a
temporary name, then a rename) so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import shlex
import sys
from pathlib import Path

from trialsim import files
from trialsim.files import file_sha256, write_json

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
    return files.package_versions(names)


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
