"""``trialsim report DIR``: a Markdown and a standalone HTML report of any results folder.

The folder is read, never changed (apart from the two report files): every
``provenance.json`` becomes a provenance section (command line, seed, scenario file and
hashes, package versions), other JSON files become tables or key/value lists, CSV files
become tables (up to :data:`MAX_ROWS` rows, else the first few; a figure and its Monte Carlo
SE are shown together as ``x ± se``), and PNG figures are linked (Markdown) or embedded as
base64 (HTML). The report is a list of simple blocks rendered by
:mod:`trialsim.report.markdown` and :mod:`trialsim.report.html`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trialsim.files import write_text
from trialsim.report.provenance import PROVENANCE_FILE

MAX_ROWS = 40
LONG_TABLE_ROWS = 10  # a longer table (e.g. simulated trial data) shows only its first rows
_ORDER = {".png": 0, ".json": 1, ".csv": 2}
SKIP_DIRS = {"cells", "__pycache__"}
SKIP_FILES = {"report.md", "report.html", "sweep.json"}


@dataclass(frozen=True)
class Block:
    """One piece of a report: kind is 'heading', 'text', 'table', 'image' or 'code'."""

    kind: str
    text: str = ""
    level: int = 2
    header: tuple = ()
    rows: tuple = ()
    path: Path | None = None


def collect(directory: str | Path) -> list[Block]:
    """Blocks describing every output in ``directory`` (recursively, sorted by path)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder; pass a results folder, e.g. results/sft-19m")
    blocks = [Block("heading", f"trialsim report: {root.name or root}", level=1)]
    folders = sorted({p.parent for p in _files(root)}, key=lambda p: (len(p.parts), str(p)))
    if not folders:
        raise ValueError(f"{root}: no JSON, CSV or PNG outputs to report on")
    for folder in folders:
        rel = folder.relative_to(root)
        blocks.append(Block("heading", str(rel) if str(rel) != "." else "(top folder)", level=2))
        # figures first (what a reader looks at), then summaries (JSON), then tables (CSV)
        files = sorted(
            (f for f in _files(root) if f.parent == folder),
            key=lambda f: (_ORDER.get(f.suffix.lower(), 3), f.name),
        )
        provenance = folder / PROVENANCE_FILE
        if provenance in files:
            blocks += provenance_blocks(_read_json(provenance))
        for f in files:
            if f == provenance:
                continue
            try:
                blocks += _file_blocks(f, rel)
            except (ValueError, json.JSONDecodeError, pd.errors.ParserError) as exc:
                blocks.append(Block("text", f"{f.name}: could not be read ({exc})"))
    return blocks


def _files(root: Path):
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or path.name in SKIP_FILES:
            continue
        if SKIP_DIRS & set(path.relative_to(root).parts[:-1]):
            continue
        if path.suffix.lower() in (".json", ".csv", ".png"):
            yield path


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def provenance_blocks(p: dict) -> list[Block]:
    """Provenance as a heading, the command line and a key/value table."""
    rows = [
        ("command", p.get("command")),
        ("created (UTC)", p.get("created_utc")),
        ("seed", p.get("seed")),
        ("scenario", p.get("scenario")),
        ("scenario file", p.get("scenario_file")),
        ("scenario file sha256", p.get("scenario_file_sha256")),
        ("validated scenario sha256", p.get("scenario_sha256")),
        ("platform", p.get("platform")),
    ]
    for key, value in (p.get("settings") or {}).items():
        if key == "cell_seeds":
            rows.append(("cell seeds", f"{len(value)} cells (see provenance.json)"))
        elif value not in (None, [], {}):
            rows.append((key, json.dumps(value) if isinstance(value, dict | list) else value))
    versions = ", ".join(f"{k} {v}" for k, v in (p.get("packages") or {}).items())
    rows.append(("package versions", versions))
    return [
        Block("heading", "Provenance", level=3),
        Block("code", p.get("command_line", "")),
        Block(
            "table",
            header=("item", "value"),
            rows=tuple((k, _cell(v)) for k, v in rows if v is not None),
        ),
    ]


def _file_blocks(path: Path, rel: Path) -> list[Block]:
    suffix = path.suffix.lower()
    title = Block("heading", path.name, level=3)
    if suffix == ".png":
        return [title, Block("image", path.name, path=path)]
    if suffix == ".csv":
        frame = pd.read_csv(path)
        return [title, *table_blocks(frame)]
    # a list of records that the same-named CSV also holds is shown once, from the CSV
    return [title, *json_blocks(_read_json(path), lists=not path.with_suffix(".csv").is_file())]


def table_blocks(frame: pd.DataFrame) -> list[Block]:
    """A table (up to MAX_ROWS rows, else the first LONG_TABLE_ROWS); ``x`` and ``x_mcse``
    are shown together as ``x ± mcse``."""
    shown = frame if len(frame) <= MAX_ROWS else frame.head(LONG_TABLE_ROWS)
    columns = [c for c in shown.columns if not (c.endswith("_mcse") and c[:-5] in shown.columns)]
    columns = [c for c in columns if not shown[c].isna().all()]
    rows = []
    for record in shown.to_dict("records"):
        row = []
        for c in columns:
            value = record[c]
            se = record.get(f"{c}_mcse")
            row.append(_cell(value, se))
        rows.append(tuple(row))
    blocks = [Block("table", header=tuple(columns), rows=tuple(rows))]
    if len(shown) < len(frame):
        blocks.append(Block("text", f"(first {len(shown)} of {len(frame)} rows)"))
    if any(f"{c}_mcse" in frame.columns for c in columns):
        blocks.append(Block("text", "± is one Monte Carlo standard error."))
    return blocks


def json_blocks(obj, *, lists: bool = True) -> list[Block]:
    """Lists of records as tables (unless ``lists`` is False); scalars as a key/value table;
    nested mappings one level deep."""
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        return table_blocks(pd.DataFrame(obj)) if lists else []
    if not isinstance(obj, dict):
        return [Block("code", json.dumps(obj, indent=2)[:4000])]
    scalars = [(k, v) for k, v in obj.items() if not isinstance(v, dict | list)]
    blocks = []
    if scalars:
        blocks.append(
            Block("table", header=("item", "value"), rows=tuple((k, _cell(v)) for k, v in scalars))
        )
    for key, value in obj.items():
        if key == "provenance":
            blocks += provenance_blocks(value)
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            if lists:
                blocks += [Block("text", f"**{key}**"), *table_blocks(pd.DataFrame(value))]
        elif isinstance(value, dict) and value:
            inner = [(k, v) for k, v in value.items() if not isinstance(v, dict | list)]
            if inner:
                blocks += [
                    Block("text", f"**{key}**"),
                    Block(
                        "table",
                        header=("item", "value"),
                        rows=tuple((k, _cell(v)) for k, v in inner),
                    ),
                ]
        elif isinstance(value, list) and value:
            blocks.append(Block("text", f"**{key}**: " + ", ".join(map(str, value[:50]))))
    return blocks


def _cell(value, se=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        text = f"{value:.4g}"
        if se is not None and not (isinstance(se, float) and math.isnan(se)):
            text += f" ± {se:.2g}"
        return text
    return str(value)


def write_report(directory: str | Path) -> tuple[Path, Path]:
    """Write ``DIR/report.md`` and ``DIR/report.html`` (standalone: figures embedded)."""
    from trialsim.report.html import render_html
    from trialsim.report.markdown import render_markdown

    directory = Path(directory)
    blocks = collect(directory)
    md = write_text(directory / "report.md", render_markdown(blocks, directory))
    html = write_text(directory / "report.html", render_html(blocks))
    return md, html
