"""Read a table from the files evaluators have: CSV, Parquet, Excel, Stata and SPSS.

CSV dialects are detected from the first lines: the separator (``,``, ``;`` or tab), the
decimal mark (a Danish Excel export writes ``;`` and decimal commas, ``12,5``) and the text
encoding (UTF-8, with or without BOM, else Windows-1252 as Excel writes æ, ø, å). Value labels
of Stata and SPSS files become their text labels (e.g. ``1 = "SFT"`` gives ``SFT``).

Every table gets a column ``_row``: the row number a spreadsheet shows (the header is row 1,
the first record row 2), so problems can be reported where a user will look for them.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from trialsim.errors import UserError

ROW = "_row"

TEXT_SUFFIXES = (".csv", ".txt", ".tsv")
SUFFIXES = (*TEXT_SUFFIXES, ".parquet", ".xlsx", ".xlsm", ".dta", ".sav", ".zsav")

# Cells that mean "missing" in exports: empty, NA, SPSS's Excel export (#NULL!), Stata's "."
MISSING_MARKERS = ("", "NA", "N/A", "NaN", "nan", ".", "#NULL!", "-")

_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
_DECIMAL_POINT = re.compile(r"^\s*[-+]?\d+\.\d+\s*$")


def read_table(path: str | Path, *, sheet: str | None = None) -> pd.DataFrame:
    """Read a data file into a DataFrame with a ``_row`` column (see module docstring).

    ``sheet`` names the .xlsx sheet (default: the first). Raises ``ValueError`` with one
    line naming the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such data file")
    suffix = path.suffix.lower()
    if sheet is not None and suffix not in (".xlsx", ".xlsm"):
        raise UserError(f"{path}: --sheet applies to .xlsx files only")
    if suffix not in SUFFIXES:
        raise UserError(
            f"{path}: unknown data format {suffix or '(no suffix)'!r}; use one of "
            f"{', '.join(SUFFIXES)}"
        )
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{path}: the file is empty; expected a header row and records")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if suffix in TEXT_SUFFIXES:
            frame = _read_text(path)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".xlsx", ".xlsm"):
            frame = _read_excel(path, sheet)
        elif suffix == ".dta":
            frame = pd.read_stata(path, convert_categoricals=True)
        else:
            frame = pd.read_spss(path, convert_categoricals=True)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{path}: too large to read into memory; split the file") from None
    except Exception as exc:  # parsers raise many types; report them on one line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read as a table: {message}") from None
    _check_columns(path, [str(c) for c in frame.columns])
    _check_nested(path, frame)
    frame = _tidy(frame)
    _check_finite(path, frame)
    frame.insert(0, ROW, range(2, len(frame) + 2))
    return frame


def _read_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    if sheet is None:
        return pd.read_excel(path, sheet_name=0, engine="openpyxl")
    with pd.ExcelFile(path, engine="openpyxl") as book:
        names = [str(n) for n in book.sheet_names]
        if sheet not in names:
            folded = {n.casefold(): n for n in names}
            if sheet.casefold() not in folded:
                raise UserError(
                    f"{path}: --sheet {sheet}: no such sheet; the sheets are {', '.join(names)}"
                )
            sheet = folded[sheet.casefold()]
        names = sheet
    return pd.read_excel(path, sheet_name=names, engine="openpyxl")


def sniff_dialect(sample: str) -> tuple[str, str]:
    """(separator, decimal mark) of a CSV text sample.

    The separator is the candidate occurring most often, and equally often, in the first
    lines; the decimal mark is ``,`` when the separator is not a comma and some field looks
    like ``12,5`` while none looks like ``12.5``.
    """
    lines = [line for line in sample.splitlines()[:20] if line.strip()]
    if not lines:
        return ",", "."
    best, best_score = ",", -1
    for sep in (";", "\t", ",", "|"):
        counts = [line.count(sep) for line in lines[:-1] or lines]
        if counts[0] == 0:
            continue
        consistent = sum(c == counts[0] for c in counts)
        score = consistent * 1000 + counts[0]
        if score > best_score:
            best, best_score = sep, score
    decimal = "."
    if best != ",":
        fields = [f for line in lines[1:] for f in next(csv.reader([line], delimiter=best))]
        commas = sum(bool(_DECIMAL_COMMA.match(f)) for f in fields)
        points = sum(bool(_DECIMAL_POINT.match(f)) for f in fields)
        if commas > 0 and points == 0:
            decimal = ","
    return best, decimal


#: more columns than any trial-data file has (a guard against a file that is one huge row)
MAX_COLUMNS = 5000


def _check_columns(path: Path, names: list[str]) -> None:
    """Refuse a table with too many columns, or two columns whose names are the same once
    spaces are stripped (``psp_0``, ``psp_0 ``), naming them."""
    if len(names) > MAX_COLUMNS:
        raise UserError(
            f"{path}: {len(names):,} columns, more than the {MAX_COLUMNS:,} a trial-data file "
            "may have; check the separator or split the file"
        )
    seen: dict[str, str] = {}
    for name in names:
        key = name.strip()
        if key in seen:
            raise UserError(
                f"{path}: columns {seen[key]!r} and {name!r} have the same name; rename one"
            )
        seen[key] = name


def _check_nested(path: Path, frame: pd.DataFrame) -> None:
    """Refuse cells that are not single values (Parquet lists, structs), naming the column and
    the row a spreadsheet shows."""
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object:
            nested = col.map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray))
            if nested.any():
                row = int(np.flatnonzero(nested.to_numpy())[0]) + 2
                raise UserError(
                    f"{path}: column {name!r} holds lists or records (row {row}); give one value "
                    "per cell"
                )


def _check_finite(path: Path, frame: pd.DataFrame) -> None:
    """Refuse infinite numbers, naming the column and the row a spreadsheet shows."""
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_float_dtype(col.dtype):
            values = col.to_numpy(dtype=float, na_value=np.nan)
            bad = np.isinf(values)
            if bad.any():
                row = int(np.flatnonzero(bad)[0]) + 2
                raise UserError(
                    f"{path}: column {name!r} has an infinite value ({values[bad][0]}) in row "
                    f"{row}; give a finite number or leave the cell empty"
                )


def _header_names(text: str, sep: str) -> list[str]:
    """The header row's field names as written (pandas would rename duplicates)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return next(csv.reader([first], delimiter=sep), [])


def _read_text(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # cp1252 leaves five bytes undefined; latin-1 decodes anything
        encoding, text = "latin-1", raw.decode("latin-1")
    sep, decimal = sniff_dialect(text[:65536])
    if not text.strip():
        raise UserError(f"{path}: the file holds no text; expected a header row and records")
    _check_columns(path, _header_names(text[: 1 << 20], sep))
    return pd.read_csv(
        path,
        sep=sep,
        decimal=decimal,
        encoding=encoding,
        na_values=list(MISSING_MARKERS),
        keep_default_na=True,
        skipinitialspace=True,
        dtype_backend="numpy_nullable",
    )


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Strip header whitespace, turn categoricals into text and nullable ints into floats."""
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            frame[name] = col.astype(object).where(col.notna(), None)
        elif pd.api.types.is_string_dtype(col.dtype):
            values = col.astype(object).where(col.notna(), None)
            uniques = values.dropna().unique()
            stripped = {u: u.strip() if isinstance(u, str) else u for u in uniques}
            values = values.map(stripped)
            frame[name] = values.where(~values.isin(MISSING_MARKERS), None)
        elif pd.api.types.is_bool_dtype(col.dtype):
            frame[name] = col.astype("Float64").astype(float)
        elif pd.api.types.is_numeric_dtype(col.dtype):
            frame[name] = col.astype("Float64").to_numpy(dtype=float, na_value=float("nan"))
    return frame
