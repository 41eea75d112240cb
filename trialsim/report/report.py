"""``trialsim report DIR``: a Markdown and a standalone HTML report of any results folder.

The folder is read, never changed (apart from the two report files). Outputs trialsim knows
(power, recruitment, design comparison, budget, sweep, Bayesian analysis, assurance,
reanalysis, simulated data; :mod:`trialsim.report.sections`) each become a section that opens
with a one-sentence answer, then the figure, then a compact table with numbers formatted for
people. Any other JSON, CSV or PNG file is shown after them as it is. One provenance section
closes the report: every command line, seed, scenario and data file hash, package versions.

Tables wider than an A4 text column are split into several tables that repeat the first
column (:func:`fit_width`). The report is a list of simple blocks rendered by
:mod:`trialsim.report.markdown` and :mod:`trialsim.report.html`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trialsim.errors import UserError
from trialsim.files import read_csv_table, write_text
from trialsim.report.numbers import cell as _cell
from trialsim.report.provenance import PROVENANCE_FILE

MAX_ROWS = 40
LONG_TABLE_ROWS = 10  # a longer table (e.g. simulated trial data) shows only its first rows
MAX_LINE_CHARS = 84  # characters across an A4 text column (~170 mm) at the table font
_ORDER = {".png": 0, ".svg": 0, ".json": 1, ".csv": 2}
SKIP_DIRS = {"cells", "__pycache__"}
SKIP_FILES = {"report.md", "report.html", "sweep.json"}


@dataclass(frozen=True)
class Block:
    """One piece of a report: kind is 'heading', 'answer' (a section's one-sentence answer),
    'text', 'table', 'image' or 'code'."""

    kind: str
    text: str = ""
    level: int = 2
    header: tuple = ()
    rows: tuple = ()
    path: Path | None = None


def _width(text) -> int:
    return max((len(part) for part in str(text).split("\n")), default=0)


def _header_width(text) -> int:
    """Headers wrap between words (cells never do): their longest word counts."""
    return max((len(word) for word in str(text).split()), default=0)


def fit_width(header, rows, *, max_chars: int = MAX_LINE_CHARS) -> list[tuple[tuple, tuple]]:
    """Split a table into tables at most ``max_chars`` wide (each column counted at its widest
    cell or header word, plus 3 for padding), each repeating the first column; a table that
    fits is one part."""
    header = tuple(header)
    rows = [tuple(r) for r in rows]
    widths = [
        max([_header_width(h), *(_width(r[i]) for r in rows)]) + 3 for i, h in enumerate(header)
    ]
    if sum(widths) <= max_chars or len(header) <= 2:
        return [(header, tuple(rows))]
    parts, current, used = [], [], widths[0]
    for i in range(1, len(header)):
        if current and used + widths[i] > max_chars:
            parts.append(current)
            current, used = [], widths[0]
        current.append(i)
        used += widths[i]
    parts.append(current)
    return [
        ((header[0], *(header[i] for i in idx)), tuple((r[0], *(r[i] for i in idx)) for r in rows))
        for idx in parts
    ]


def table(header, rows) -> list[Block]:
    """Table blocks that fit the page width (see :func:`fit_width`)."""
    return [Block("table", header=h, rows=r) for h, r in fit_width(header, rows)]


def collect(directory: str | Path, *, currency: str | None = None) -> list[Block]:
    """Blocks describing every output in ``directory``: known outputs as answered sections,
    others as they are, one provenance section last."""
    from trialsim.report.sections import known_sections, provenance_section

    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; pass a results folder, e.g. results/sft-19m")
    files = sorted(_files(root))
    if not files:
        raise UserError(f"{root}: no JSON, CSV or PNG outputs to report on")
    blocks = [Block("heading", f"trialsim report: {root.resolve().name}", level=1)]
    used: set[Path] = set()
    for section_blocks, section_files in known_sections(root, currency=currency):
        blocks += section_blocks
        used |= set(section_files)
    provenance_files = [f for f in files if f.name == PROVENANCE_FILE]
    rest = [f for f in files if f not in used and f not in provenance_files]
    folders = sorted({p.parent for p in rest}, key=lambda p: (len(p.parts), str(p)))
    for folder in folders:
        rel = folder.relative_to(root)
        blocks.append(
            Block(
                "heading", f"Other outputs: {rel}" if str(rel) != "." else "Other outputs", level=2
            )
        )
        for f in sorted(
            (f for f in rest if f.parent == folder),
            key=lambda f: (_ORDER.get(f.suffix.lower(), 3), f.name),
        ):
            try:
                blocks += _file_blocks(f)
            except (ValueError, json.JSONDecodeError, pd.errors.ParserError) as exc:
                blocks.append(Block("text", f"{f.name}: could not be read ({exc})"))
    blocks += provenance_section(root, files)
    return blocks


def _files(root: Path):
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or path.name in SKIP_FILES:
            continue
        if SKIP_DIRS & set(path.relative_to(root).parts[:-1]):
            continue
        if path.suffix.lower() in (".json", ".csv", ".png"):
            yield path


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _file_blocks(path: Path) -> list[Block]:
    suffix = path.suffix.lower()
    title = Block("heading", path.name, level=3)
    if suffix == ".png":
        return [title, Block("image", path.name, path=path)]
    if suffix == ".csv":
        return [title, *table_blocks(read_csv_table(path))]
    # a list of records that the same-named CSV also holds is shown once, from the CSV
    return [title, *json_blocks(read_json(path), lists=not path.with_suffix(".csv").is_file())]


def table_blocks(frame: pd.DataFrame, *, max_rows: int = MAX_ROWS) -> list[Block]:
    """A table (up to ``max_rows`` rows, else the first LONG_TABLE_ROWS); ``x`` and ``x_mcse``
    are shown together as ``x ± mcse``; split to fit the page width."""
    shown = frame if len(frame) <= max_rows else frame.head(LONG_TABLE_ROWS)
    columns = [c for c in shown.columns if not (c.endswith("_mcse") and c[:-5] in shown.columns)]
    columns = [c for c in columns if not shown[c].isna().all()]
    rows = []
    for record in shown.to_dict("records"):
        rows.append(tuple(_cell(record[c], record.get(f"{c}_mcse")) for c in columns))
    blocks = table(tuple(str(c) for c in columns), rows)
    if len(shown) < len(frame):
        blocks.append(Block("text", f"(first {len(shown)} of {len(frame):,} rows)"))
    if any(f"{c}_mcse" in frame.columns for c in columns):
        blocks.append(Block("text", "± is one Monte Carlo standard error."))
    return blocks


def json_blocks(obj, *, lists: bool = True) -> list[Block]:
    """Lists of records as tables (unless ``lists`` is False); scalars as a key/value table;
    nested mappings one level deep. Provenance-like keys are left to the provenance section."""
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        return table_blocks(pd.DataFrame(obj)) if lists else []
    if not isinstance(obj, dict):
        return [Block("code", json.dumps(obj, indent=2)[:4000])]
    skip = {"provenance", "versions", "packages"}
    scalars = [(k, v) for k, v in obj.items() if not isinstance(v, dict | list) and k not in skip]
    blocks = []
    if scalars:
        blocks += table(("item", "value"), [(k, _cell(v)) for k, v in scalars])
    for key, value in obj.items():
        if key in skip:
            continue
        if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            if lists:
                blocks += [Block("text", f"**{key}**"), *table_blocks(pd.DataFrame(value))]
        elif isinstance(value, dict) and value:
            inner = [(k, _cell(v)) for k, v in value.items() if not isinstance(v, dict | list)]
            if inner:
                blocks += [Block("text", f"**{key}**"), *table(("item", "value"), inner)]
        elif isinstance(value, list) and value:
            blocks.append(Block("text", f"**{key}**: " + ", ".join(map(str, value[:50]))))
    return blocks


def write_report(directory: str | Path, *, currency: str | None = None) -> tuple[Path, Path]:
    """Write ``DIR/report.md`` and ``DIR/report.html`` (standalone: figures embedded)."""
    from trialsim.report.html import render_html
    from trialsim.report.markdown import render_markdown

    directory = Path(directory)
    blocks = collect(directory, currency=currency)
    md_text = render_markdown(blocks, directory)
    html_text = render_html(blocks)
    md = write_text(directory / "report.md", md_text)
    html = write_text(directory / "report.html", html_text)
    return md, html
