"""Render report blocks (:mod:`trialsim.report.report`) as one standalone HTML file.

Figures are embedded as base64 data URIs, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #eef2f7; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
img { max-width: 100%; border: 1px solid #ddd; }
h2 { border-bottom: 2px solid #1f4e79; padding-bottom: 2px; margin-top: 2em; }
"""


def html_table(header, rows) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(blocks) -> str:
    """The report as a complete HTML document with figures embedded."""
    title = next((b.text for b in blocks if b.kind == "heading"), "trialsim report")
    parts = []
    for b in blocks:
        if b.kind == "heading":
            level = min(max(b.level, 1), 6)
            parts.append(f"<h{level}>{escape(b.text)}</h{level}>")
        elif b.kind == "text":
            text = escape(b.text)
            if text.startswith("**") and "**" in text[2:]:
                end = text.index("**", 2)
                text = f"<strong>{text[2:end]}</strong>{text[end + 2 :]}"
            parts.append(f"<p>{text}</p>")
        elif b.kind == "code":
            parts.append(f"<pre>{escape(b.text)}</pre>")
        elif b.kind == "table":
            parts.append(html_table(b.header, b.rows))
        elif b.kind == "image":
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            parts.append(f'<img alt="{escape(b.text)}" src="data:image/png;base64,{data}">')
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
