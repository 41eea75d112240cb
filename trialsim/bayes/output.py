"""Writing Bayesian results: provenance facts, InferenceData as netCDF, and the posterior draws
as CSV and Parquet tables, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


def draws_frame(posterior) -> pd.DataFrame:
    """The posterior draws as a table: one row per (chain, draw), a column per scalar
    variable and per element of a vector one (``z[0]``, ``z[1]``, ...; ``name[i,j]`` for
    matrices), every variable of the posterior as stored: ``effect``, ``sigma`` and ``tau``
    in outcome units, and the sampler's standardised ones (``effect_z``, ``z``, ...).

    ``posterior`` is an ArviZ InferenceData (its ``posterior`` group is used) or an xarray
    Dataset with leading dimensions ``chain`` and ``draw``."""
    ds = getattr(posterior, "posterior", posterior)
    n_chain, n_draw = ds.sizes["chain"], ds.sizes["draw"]
    columns: dict[str, np.ndarray] = {
        "chain": np.repeat(np.arange(n_chain), n_draw),
        "draw": np.tile(np.arange(n_draw), n_chain),
    }
    for name, var in ds.data_vars.items():
        values = var.transpose("chain", "draw", ...).values
        flat = values.reshape(n_chain * n_draw, -1)
        if values.ndim == 2:
            columns[str(name)] = flat[:, 0]
            continue
        for k, index in enumerate(np.ndindex(*values.shape[2:])):
            columns[f"{name}[{','.join(map(str, index))}]"] = flat[:, k]
    return pd.DataFrame(columns)


def write_draws(posterior, folder: str | Path, *, csv_dialect: str = "comma") -> tuple[Path, Path]:
    """Write :func:`draws_frame` to ``folder/draws.csv`` (in ``csv_dialect``, see
    :data:`trialsim.files.CSV_DIALECTS`) and ``folder/draws.parquet`` (each atomically: a
    temporary file, then a rename) and return the two paths."""
    from trialsim.files import write_csv

    folder = Path(folder)
    frame = draws_frame(posterior)
    csv, parquet = folder / "draws.csv", folder / "draws.parquet"
    write_csv(frame, csv, dialect=csv_dialect, float_format="%.10g")
    with atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    return csv, parquet
