"""The report's markup toolkit: every string is escaped unless it is already :class:`Safe` markup.

Why not Jinja2: it is not a core dependency (only the ``train`` extra pulls it in), and the report is
a handful of tables, ``<pre>`` blocks and SVG charts. Building it from small functions keeps the one
rule in one place — :func:`el` escapes every child and attribute that is a plain ``str`` — so a
model reply holding ``<script>`` can only ever be text. The page also carries a Content-Security-Policy
that allows no script and no network fetch, a second wall behind the escaping.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

# no script may run, nothing may be fetched: the file works from disk with no network
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class Safe(str):
    """Markup that is already escaped (built by :func:`el` and friends); never wrap model text in it."""

    __slots__ = ()


def esc(value: Any) -> Safe:
    """``value`` as text in markup: ``Safe`` stays as it is, anything else is escaped."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    return Safe(esc(sep).join(esc(p) for p in parts))


def el(tag: str, *children: Any, **attrs: Any) -> Safe:
    """``<tag attrs>children</tag>``; ``class_`` → ``class``, ``data_x`` → ``data-x``; None/False drop out."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{esc(value)}"')
    body = join(c for c in children if c is not None)
    return Safe(f"<{' '.join(parts)}>{body}</{tag}>")


def clip(text: Any, limit: int) -> str:
    """At most ``limit`` characters of ``text`` (start and end, with a marker saying how much is cut)."""
    s = "" if text is None else str(text)
    if len(s) <= limit:
        return s
    head = limit * 2 // 3
    tail = limit - head
    return f"{s[:head]}\n… [{len(s) - limit:,} characters cut] …\n{s[-tail:]}"


def pre(text: Any, limit: int = 4000, *, class_: str | None = None) -> Safe:
    return el("pre", clip(text, limit), class_=class_)


def text_block(text: Any, limit: int = 4000) -> Safe:
    """Model text in a ``<pre>``; an empty or whitespace-only text says so instead of showing a blank box."""
    s = "" if text is None else str(text)
    if not s:
        return note("(empty)")
    if not s.strip():
        return note(f"(whitespace only: {len(s)} characters, {s.count(chr(10))} line breaks)")
    return pre(s, limit)


def as_json(value: Any, limit: int = 4000) -> str:
    """Pretty JSON of ``value`` for a ``<pre>`` (clipped); strings come back as they are."""
    if isinstance(value, str):
        return clip(value, limit)
    return clip(json.dumps(value, indent=2, ensure_ascii=False, default=str), limit)


def num(value: Any) -> str:
    """How a count or a rate is shown: integers with thousands separators, floats as stored."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,}"
    return str(value)


def table(head: Iterable[Any], rows: Iterable[Iterable[Any]], *, class_: str = "grid") -> Safe:
    return el("table", el("thead", el("tr", *(el("th", h) for h in head))),
              el("tbody", *(el("tr", *(el("td", c) for c in row)) for row in rows)), class_=class_)


def kv_table(pairs: Iterable[tuple[Any, Any]]) -> Safe:
    return el("table", *(el("tr", el("th", k), el("td", v)) for k, v in pairs), class_="kv")


def cards(pairs: Iterable[tuple[Any, Any]]) -> Safe:
    """Counters as a grid of small cards: the label, then the value (``num``-formatted)."""
    return el("div", *(el("div", el("div", k, class_="l"), el("div", num(v), class_="v"), class_="card")
                       for k, v in pairs), class_="cards")


def fields(row: Any, limit: int = 3000) -> Safe:
    """A row's fields as a two-column table; text keeps its line breaks, other values are JSON."""
    if not isinstance(row, dict):
        return pre(as_json(row, limit), limit)
    cells = []
    for key, value in row.items():
        text = clip(value, limit) if isinstance(value, str) else as_json(value, limit)
        cells.append(el("tr", el("th", key), el("td", el("div", text, class_="val"))))
    return el("table", *cells, class_="fields")


def section(title: str, *body: Any, open_: bool = True, id_: str | None = None) -> Safe:
    """A collapsible section (``<details>``: no script needed)."""
    return el("details", el("summary", el("h3", title)), *body, open=open_, class_="section", id=id_)


def note(text: Any) -> Safe:
    return el("p", text, class_="note")


STYLE = """
:root { --fg:#1d2330; --muted:#5d6676; --line:#d8dde6; --bg:#f6f7f9; --card:#fff; --accent:#2f6fdb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--bg); }
header.page { padding:18px 24px 8px; }
header.page h1 { margin:0 0 4px; font-size:22px; }
header.page p { margin:0; color:var(--muted); }
main { padding:8px 24px 40px; }
.runs { display:grid; gap:18px; grid-template-columns:repeat(var(--cols,1), minmax(460px, 1fr)); overflow-x:auto; }
.run { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 18px; min-width:0; }
.run > h2 { margin:0 0 2px; font-size:18px; word-break:break-all; }
.run > .path { color:var(--muted); font-size:12px; margin:0 0 10px; word-break:break-all; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; background:#e8effc;
         color:var(--accent); margin-left:6px; vertical-align:middle; }
.badge.warn { background:#fdf0dc; color:#9a5b00; }
.compare { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 18px;
           margin-bottom:18px; overflow-x:auto; }
.compare .tables { display:flex; flex-wrap:wrap; gap:12px 48px; align-items:flex-start; }
.compare h2 { margin:4px 0; font-size:18px; } .compare h3 { margin:8px 0 0; font-size:14px; }
details.section { border-top:1px solid var(--line); padding:6px 0; }
details.section > summary { cursor:pointer; list-style:none; }
details.section > summary::-webkit-details-marker { display:none; }
details.section > summary h3 { display:inline; font-size:15px; margin:0; }
details.section > summary::before { content:"▸ "; color:var(--muted); }
details.section[open] > summary::before { content:"▾ "; }
table { border-collapse:collapse; margin:8px 0; }
table.grid th, table.grid td, table.kv th, table.kv td { border-bottom:1px solid var(--line); padding:3px 10px 3px 0;
  text-align:left; vertical-align:top; }
table.grid td.n, table.kv td.n { text-align:right; font-variant-numeric:tabular-nums; }
table.kv th { font-weight:500; color:var(--muted); padding-right:16px; white-space:nowrap; }
table.grid th { font-weight:600; white-space:nowrap; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(150px, 1fr)); gap:8px; margin:8px 0; }
.card { border:1px solid var(--line); border-radius:6px; padding:6px 10px; background:#fbfcfd; }
.card .l { color:var(--muted); font-size:12px; }
.card .v { font-size:18px; font-weight:600; font-variant-numeric:tabular-nums; }
table.fields { width:100%; margin:2px 0 6px; }
table.fields th { text-align:left; vertical-align:top; color:var(--muted); font-weight:500; padding:3px 10px 3px 0;
  white-space:nowrap; width:1%; border-bottom:1px solid var(--line); }
table.fields td { border-bottom:1px solid var(--line); padding:3px 0; }
.val { white-space:pre-wrap; word-break:break-word; font-family:ui-monospace,"DejaVu Sans Mono",monospace;
       font-size:12.5px; max-height:220px; overflow:auto; }
pre { background:#f3f4f7; border:1px solid var(--line); border-radius:6px; padding:8px 10px; margin:4px 0 10px;
      white-space:pre-wrap; word-break:break-word; max-height:320px; overflow:auto; font-size:12.5px; }
.pair { display:grid; grid-template-columns:1fr 1fr; gap:10px; }
.pair h4, .sample h4 { margin:6px 0 2px; font-size:13px; color:var(--muted); }
.sample { border:1px solid var(--line); border-radius:6px; padding:6px 10px; margin:8px 0; }
.sample .meta { color:var(--muted); font-size:12px; }
.note { color:var(--muted); font-size:13px; margin:4px 0; }
.callout { background:#fdf6e7; border:1px solid #efd9a9; border-radius:6px; padding:6px 10px; margin:8px 0; }
.ok { color:#1d7a3a; } .bad { color:#b3261e; }
svg.chart { width:100%; max-width:760px; height:auto; display:block; margin:6px 0; }
svg.chart text { font:12px system-ui,"DejaVu Sans",sans-serif; fill:#3b4250; }
svg.chart .axis { stroke:#9aa3b2; stroke-width:1; }
svg.chart .gridline { stroke:#e6e9ef; stroke-width:1; }
.legend { display:flex; flex-wrap:wrap; gap:12px; font-size:12px; color:var(--muted); margin:2px 0 6px; }
.legend i { display:inline-block; width:12px; height:3px; margin-right:4px; vertical-align:middle; }
footer { color:var(--muted); font-size:12px; padding:0 24px 24px; }
"""


def page(title: str, subtitle: str, body: Safe) -> str:
    """The whole document: inline CSS, a CSP that allows no script or fetch, no external resource."""
    head = (f'<meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style>")
    top = el("header", el("h1", title), el("p", subtitle), class_="page")
    return f"<!DOCTYPE html>\n<html lang=\"en\"><head>{head}</head><body>{top}{el('main', body)}</body></html>\n"
