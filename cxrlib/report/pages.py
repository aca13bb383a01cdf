"""Self-contained HTML table pages that the report shows as results of their own (the headline
tables, results/metrics/summary.html): one look, escaped text, the numbers first."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrlib.io import write_atomic

_CSS = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1.2em; color: #1e293b;
       max-width: 78em; }
h1 { font-size: 1.3em; } p, li { line-height: 1.45; max-width: 60em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border-bottom: 1px solid #cbd5e1; padding: 0.3em 0.7em; text-align: left;
         vertical-align: top; }
th { background: #f1f5f9; } h2 { font-size: 1.05em; margin-top: 1.5em; }
.synthetic { color: firebrick; }
"""


def tables_page(
    title: str,
    table: pd.DataFrame,
    *,
    intro: Sequence[str] = (),
    notes: Sequence[str] = (),
    synthetic: bool = False,
) -> str:
    """A self-contained HTML page: title, the table, notes as a list, then the intro
    paragraphs under "How to read this table" (the numbers first, where the frame opens).

    Every text is escaped; the report shows the page in a frame as wide as the window.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if synthetic:
        parts.append('<p class="synthetic">synthetic phantom data (not real patients)</p>')
    parts.append(table.to_html(index=False, border=0, na_rep="–", escape=True))
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    if intro:
        parts.append("<h2>How to read this table</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in intro]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_page(target: str | Path, page: str) -> None:
    """Write `page` to `target` atomically (UTF-8)."""
    write_atomic(Path(target), lambda tmp: tmp.write_text(page, encoding="utf-8"))
