"""Inline SVG charts (no charting library, no script): horizontal bars, line charts, grouped bars.

Every label goes through :func:`datafactory.report.html.esc`; each mark carries a ``<title>`` so the
browser shows its exact value on hover. Charts scale with their container (``viewBox``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from datafactory.report.html import Safe, el, esc

PALETTE = ("#2f6fdb", "#e07b1f", "#2a9d5b", "#c0392b", "#8e44ad", "#7f8c8d", "#d4a017", "#16a2b8")


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    color: str = PALETTE[0]
    dots: bool = False
    dashed: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:.3g}"


def _svg(width: int, height: int, *children: Safe, label: str) -> Safe:
    return el("svg", *children, xmlns="http://www.w3.org/2000/svg", viewBox=f"0 0 {width} {height}",
              class_="chart", role="img", aria_label=label, style=f"max-width:{width}px")


def hbar_chart(items: Sequence[tuple[str, float]], *, label: str, width: int = 600,
               color: str = PALETTE[3]) -> Safe:
    """One horizontal bar per ``(name, value)``, largest first as given; the value is written beside it."""
    if not items:
        return Safe("")
    row_h, top = 22, 6
    name_w = min(260, 12 + 7 * max(len(n) for n, _ in items))
    bar_w = width - name_w - 70
    peak = max(v for _, v in items) or 1.0
    height = top * 2 + row_h * len(items)
    marks = []
    for i, (name, value) in enumerate(items):
        y = top + i * row_h
        w = max(1.0, bar_w * value / peak)
        marks.append(el("text", name, x=name_w - 8, y=y + 15, text_anchor="end"))
        marks.append(el("rect", el("title", f"{name}: {value:,g}"), x=name_w, y=y + 3, width=f"{w:.1f}",
                        height=row_h - 6, rx=2, fill=color))
        marks.append(el("text", f"{value:,g}", x=f"{name_w + w + 6:.1f}", y=y + 15))
    return _svg(width, height, *marks, label=label)


def line_chart(series: Sequence[Series], *, label: str, width: int = 760, height: int = 200,
               x_label: str = "", y_label: str = "", vlines: Sequence[tuple[float, str]] = (),
               zero_based: bool = True, x_min: float | None = None) -> Safe:
    """Lines (optionally with dots) on shared axes; ``vlines`` mark x positions (e.g. the best step)."""
    pts = [p for s in series for p in s.points]
    if not pts:
        return Safe("")
    left, right, top, bottom = 52, 14, 10, 34
    xs = [p[0] for p in pts] + [v for v, _ in vlines] + ([x_min] if x_min is not None else [])
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1
    yt = nice_ticks(0.0 if zero_based and min(ys) >= 0 else min(ys), max(ys), 4)
    y0, y1 = yt[0], yt[-1]
    if y1 <= y0:
        y1 = y0 + 1
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * (x - x0) / (x1 - x0)

    def sy(y: float) -> float:
        return top + ph * (1 - (y - y0) / (y1 - y0))

    marks: list[Safe] = []
    for t in yt:
        marks.append(el("line", x1=left, x2=width - right, y1=f"{sy(t):.1f}", y2=f"{sy(t):.1f}", class_="gridline"))
        marks.append(el("text", _fmt(t), x=left - 6, y=f"{sy(t) + 4:.1f}", text_anchor="end"))
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1:
            marks.append(el("text", _fmt(t), x=f"{sx(t):.1f}", y=height - bottom + 16, text_anchor="middle"))
    marks.append(el("line", x1=left, x2=left, y1=top, y2=top + ph, class_="axis"))
    marks.append(el("line", x1=left, x2=width - right, y1=top + ph, y2=top + ph, class_="axis"))
    if x_label:
        marks.append(el("text", x_label, x=left + pw / 2, y=height - 4, text_anchor="middle"))
    if y_label:
        marks.append(el("text", y_label, x=12, y=top + ph / 2, text_anchor="middle",
                        transform=f"rotate(-90 12 {top + ph / 2:.1f})"))
    for x, text in vlines:
        marks.append(el("line", el("title", text), x1=f"{sx(x):.1f}", x2=f"{sx(x):.1f}", y1=top, y2=top + ph,
                        stroke=PALETTE[2], stroke_width=1.5, stroke_dasharray="5 3"))
        anchor = "end" if sx(x) > left + pw * 0.8 else "start"
        marks.append(el("text", text, x=f"{sx(x) + (-4 if anchor == 'end' else 4):.1f}", y=top + 12,
                        text_anchor=anchor, fill=PALETTE[2]))
    for s in series:
        if not s.points:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        marks.append(el("polyline", el("title", s.name), points=path, fill="none", stroke=s.color,
                        stroke_width=1.8, stroke_dasharray="4 3" if s.dashed else None,
                        stroke_linejoin="round"))
        if s.dots:
            for x, y in s.points:
                marks.append(el("circle", el("title", f"{s.name} at {x:g}: {y:.4g}"), cx=f"{sx(x):.1f}",
                                cy=f"{sy(y):.1f}", r=3, fill=s.color))
    return _svg(width, height, *marks, label=label)


def legend(series: Sequence[Series]) -> Safe:
    return el("div", *(el("span", el("i", style=f"background:{esc(s.color)}"), s.name) for s in series),
              class_="legend")


def grouped_bars(groups: Sequence[tuple[str, Sequence[tuple[str, float | None, float | None]]]], *,
                 label: str, width: int = 760, percent: bool = True) -> Safe:
    """Bars per group (e.g. per filter: base, tuned) with ± stderr whiskers; values 0..1 shown as %."""
    bars = [b for _, g in groups for b in g]
    if not bars:
        return Safe("")
    left, right, top, bottom = 52, 14, 14, 40
    height = 210
    peak = max([(v or 0) + (e or 0) for _, v, e in bars] + [0.1 if percent else 1e-9])  # all zero: 0..10 %
    yt = nice_ticks(0.0, peak, 4)
    y1 = yt[-1] or 1.0
    pw, ph = width - left - right, height - top - bottom
    slot = pw / len(groups)
    per = max(len(g) for _, g in groups)
    bw = min(48.0, slot * 0.7 / per)

    def sy(v: float) -> float:
        return top + ph * (1 - v / y1)

    def shown(v: float) -> str:
        return f"{100 * v:.1f}%" if percent else f"{v:.3g}"

    marks: list[Safe] = []
    for t in yt:
        marks.append(el("line", x1=left, x2=width - right, y1=f"{sy(t):.1f}", y2=f"{sy(t):.1f}", class_="gridline"))
        marks.append(el("text", f"{100 * t:g}%" if percent else _fmt(t), x=left - 6, y=f"{sy(t) + 4:.1f}",
                        text_anchor="end"))
    marks.append(el("line", x1=left, x2=width - right, y1=top + ph, y2=top + ph, class_="axis"))
    for gi, (gname, items) in enumerate(groups):
        gx = left + slot * gi + (slot - bw * len(items)) / 2
        marks.append(el("text", gname, x=f"{left + slot * gi + slot / 2:.1f}", y=height - bottom + 18,
                        text_anchor="middle"))
        for bi, (name, value, err) in enumerate(items):
            x = gx + bi * bw
            color = PALETTE[bi % len(PALETTE)]
            if value is None:
                continue
            tip = f"{gname} {name}: {shown(value)}" + (f" ± {shown(err)}" if err else "")
            marks.append(el("rect", el("title", tip), x=f"{x + 2:.1f}", y=f"{sy(value):.1f}", width=f"{bw - 4:.1f}",
                            height=f"{max(0.5, top + ph - sy(value)):.1f}", fill=color, rx=2))
            if err:
                cx = x + bw / 2
                marks.append(el("line", x1=f"{cx:.1f}", x2=f"{cx:.1f}", y1=f"{sy(min(y1, value + err)):.1f}",
                                y2=f"{sy(max(0.0, value - err)):.1f}", stroke="#333", stroke_width=1.2))
            marks.append(el("text", shown(value), x=f"{x + bw / 2:.1f}", y=f"{sy(min(y1, value + (err or 0))) - 4:.1f}",
                            text_anchor="middle"))
    return _svg(width, height, *marks, label=label)
