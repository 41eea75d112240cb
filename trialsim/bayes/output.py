"""Writing Bayesian results: provenance facts and InferenceData as netCDF, atomically."""

from __future__ import annotations

from pathlib import Path

from trialsim.files import atomic_path, package_versions

PACKAGES = ("trialsim", "numpy", "scipy", "pymc", "pytensor", "arviz", "nutpie")


def versions() -> dict[str, str]:
    """Versions of the packages a Bayesian result depends on."""
    return package_versions(PACKAGES)


def write_netcdf(idata, path: str | Path) -> Path:
    """ArviZ InferenceData to netCDF (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))
    return Path(path)
