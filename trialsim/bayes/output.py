"""Writing Bayesian results atomically (JSON, netCDF) with provenance."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

PACKAGES = ("trialsim", "numpy", "scipy", "pymc", "pytensor", "arviz", "nutpie")


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_json(obj, path: str | Path) -> Path:
    text = json.dumps(obj, indent=2, default=_default)
    return _atomic(Path(path), lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def write_netcdf(idata, path: str | Path) -> Path:
    """ArviZ InferenceData to netCDF (temporary file, then rename)."""
    return _atomic(Path(path), lambda tmp: idata.to_netcdf(tmp))
