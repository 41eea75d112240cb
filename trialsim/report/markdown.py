"""Render report blocks (:mod:`trialsim.report.report`) as GitHub-flavoured Markdown.

Figures are linked by their path relative to the report, so the Markdown renders on a
repository page next to the PNG files.
"""

from __future__ import annotations

import os
from pathlib import Path


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows) -> str:
    """A pipe table; cells are escaped so a ``|`` in a value cannot break the layout."""
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(blocks, root: str | Path) -> str:
    """The report as Markdown; ``root`` is the folder the report is written to."""
    root = Path(root)
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append("#" * b.level + " " + b.text)
        elif b.kind == "answer":
            parts.append(f"> {b.text}")
        elif b.kind == "text":
            parts.append(b.text)
        elif b.kind == "code":
            parts.append("```\n" + b.text + "\n```")
        elif b.kind == "table":
            parts.append(markdown_table(b.header, b.rows))
        elif b.kind == "image":
            rel = Path(os.path.relpath(b.path, root)).as_posix()
            parts.append(f"![{b.text}]({rel})")
    return "\n\n".join(parts) + "\n"
