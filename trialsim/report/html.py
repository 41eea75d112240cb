"""Render report blocks (:mod:`trialsim.report.report`) as one standalone HTML file.

Figures are embedded as base64 data URIs, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
from html import escape

STYLE = """
@page { size: A4; margin: 18mm 16mm; }
html { -webkit-text-size-adjust: 100%; }
body { font-family: "DejaVu Sans", system-ui, sans-serif; max-width: 46em; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; font-size: 15px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; max-width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right;
         white-space: nowrap; vertical-align: top; }
th { border-bottom: 2px solid #0072B2; background: #f3f7fb; white-space: normal;
     vertical-align: bottom; }
td:first-child, th:first-child { text-align: left; }
td.wrap { white-space: normal; overflow-wrap: anywhere; text-align: left; }
pre { background: #f5f5f5; padding: 0.6em; white-space: pre-wrap; overflow-wrap: anywhere;
      font-size: 0.8em; }
code { overflow-wrap: anywhere; }
img { display: block; max-width: 100%; height: auto; margin: 0.6em 0; }
h2 { border-bottom: 2px solid #0072B2; padding-bottom: 2px; margin-top: 2em;
     break-after: avoid; }
p.answer { font-size: 1.08em; background: #eef5fb; border-left: 4px solid #0072B2;
           padding: 0.5em 0.8em; }
p { overflow-wrap: anywhere; }
table, img { break-inside: avoid; }
"""

WRAP_AT = 28  # cells longer than this (text, hashes) may wrap; numbers never do


def _td(c) -> str:
    text = str(c)
    wrap = len(text) > WRAP_AT and "\u00b1" not in text
    return f'<td class="wrap">{escape(text)}</td>' if wrap else f"<td>{escape(text)}</td>"


def html_table(header, rows) -> str:
    """A table whose number cells never wrap (estimate ± MCSE stays on one line)."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    """`code` spans as <code> (text already escaped)."""
    import re

    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def render_html(blocks) -> str:
    """The report as a complete HTML document with figures embedded."""
    title = next((b.text for b in blocks if b.kind == "heading"), "trialsim report")
    parts = []
    for b in blocks:
        if b.kind == "heading":
            level = min(max(b.level, 1), 6)
            parts.append(f"<h{level}>{escape(b.text)}</h{level}>")
        elif b.kind == "answer":
            parts.append(f'<p class="answer">{_inline(escape(b.text))}</p>')
        elif b.kind == "text":
            text = _inline(escape(b.text))
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
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
