"""Charts for analysts as inline SVG built on the server: no JavaScript library, no CDN."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import sqlite_utils

from .. import store
from ..classifier.registry import CATEGORIES

PALETTE = ["#1b6ca8", "#d1495b", "#edae49", "#66a182", "#8d6a9f", "#00798c", "#e07a5f", "#3d405b"]


def chart_data(db: sqlite_utils.Database, target: str = "") -> dict[str, Any]:
    """The overview (weekly categories, top outlets and targets), or one target's timeline."""
    if target:
        return {"weekly": [], "outlets": [], "targets": [], "timeline": store.target_timeline(db, target)}
    return {"weekly": store.weekly_flags_by_category(db), "outlets": store.top_outlets(db),
            "targets": store.top_targets(db), "timeline": []}


def nice_ticks(top: int, most: int = 5) -> list[int]:
    """Round tick values from 0 up to at least ``top`` (steps of 1, 2 or 5 x 10^k, at most ``most`` + 1 ticks)."""
    top = max(1, int(top))
    step = 1
    while True:
        for factor in (1, 2, 5):
            if -(-top // (step * factor)) <= most:
                size = step * factor
                return list(range(0, -(-top // size) * size + 1, size))
        step *= 10


def _axes(parts: list[str], ticks: list[int], left: int, right: int, top_y: float, bottom_y: float,
          x_title: str, y_title: str) -> None:
    """Gridlines and labels for every y tick, and both axis titles."""
    span = bottom_y - top_y
    for t in ticks:
        y = bottom_y - t / ticks[-1] * span
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd" stroke-width="1"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{t}</text>')
    parts.append(f'<text x="{(left + right) / 2:.0f}" y="{bottom_y + 30:.0f}" font-size="11" text-anchor="middle">'
                 f'{escape(x_title)}</text>')
    parts.append(f'<text transform="translate(12 {(top_y + bottom_y) / 2:.0f}) rotate(-90)" font-size="11" '
                 f'text-anchor="middle">{escape(y_title)}</text>')


def stacked_weeks(rows: list[dict[str, Any]], label: Callable[[str], str]) -> str:
    """Stacked bars: one per week, one colour per category, a y axis with gridlines and a two-column legend."""
    weeks = sorted({r["week"] for r in rows})
    if not weeks:
        return ""
    totals = {w: sum(r["n"] for r in rows if r["week"] == w) for w in weeks}
    ticks = nice_ticks(max(totals.values()))
    left, width, plot_top, height = 60, 760, 10, 220
    bar = max(4, min(40, (width - left - 10) // len(weeks) - 4))
    legend_rows = -(-len(CATEGORIES) // 2)
    total_height = height + 50 + legend_rows * 20
    parts = [f'<svg class="chart" viewBox="0 0 {width} {total_height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    _axes(parts, ticks, left, width - 10, plot_top, height, label("axis_week"), label("axis_flags"))
    for i, w in enumerate(weeks):
        x, y = left + 4 + i * (bar + 4), float(height)
        for j, cat in enumerate(CATEGORIES):
            n = sum(r["n"] for r in rows if r["week"] == w and r["category"] == cat)
            if n:
                h = n / ticks[-1] * (height - plot_top)
                y -= h
                parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{PALETTE[j]}">'
                             f'<title>{escape(w)} · {escape(label("cat." + cat))}: {n}</title></rect>')
        if i % max(1, len(weeks) // 8) == 0:
            parts.append(f'<text x="{x}" y="{height + 14}" font-size="10">{escape(w[5:])}</text>')
    # two columns of 340 px: the longest Spanish category names (~36 characters) fit without overlapping
    for j, cat in enumerate(CATEGORIES):
        lx, ly = left + (j % 2) * 340, height + 58 + (j // 2) * 20
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{PALETTE[j]}"/>'
                     f'<text x="{lx + 14}" y="{ly}" font-size="11">{escape(label("cat." + cat))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars(rows: list[dict[str, Any]], link: Callable[[str], str] | None = None) -> str:
    """Horizontal bars with labels and counts (optionally linking each label)."""
    if not rows:
        return ""
    top = max(r["n"] for r in rows) or 1
    height = 24 * len(rows) + 10
    parts = [f'<svg class="chart" viewBox="0 0 760 {height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, r in enumerate(rows):
        y = 5 + i * 24
        label = escape(str(r["label"]))
        text = f'<text x="0" y="{y + 14}" font-size="12">{label}</text>'
        if link:
            text = f'<a href="{escape(link(str(r["label"])))}">{text}</a>'
        w = r["n"] / top * 440
        parts.append(f'{text}<rect x="280" y="{y}" width="{w:.1f}" height="18" fill="{PALETTE[0]}"/>'
                     f'<text x="{285 + w:.1f}" y="{y + 14}" font-size="12">{r["n"]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline(rows: list[dict[str, Any]], label: Callable[[str], str]) -> str:
    """Weekly counts for one target as bars, with a y axis and axis titles."""
    if not rows:
        return ""
    ticks = nice_ticks(max(r["n"] for r in rows))
    left, width, plot_top, height = 60, 760, 10, 170
    bar = max(4, min(30, (width - left - 10) // len(rows) - 4))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 40}" role="img" xmlns="http://www.w3.org/2000/svg">']
    _axes(parts, ticks, left, width - 10, plot_top, height, label("axis_week"), label("axis_flags"))
    for i, r in enumerate(rows):
        h = r["n"] / ticks[-1] * (height - plot_top)
        x = left + 4 + i * (bar + 4)
        parts.append(f'<rect x="{x}" y="{height - h:.1f}" width="{bar}" height="{h:.1f}" fill="{PALETTE[1]}">'
                     f'<title>{escape(r["week"])}: {r["n"]}</title></rect>')
        if i % max(1, len(rows) // 8) == 0:
            parts.append(f'<text x="{x}" y="{height + 14}" font-size="10">{escape(r["week"][5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_all(data: dict[str, Any], label: Callable[[str], str]) -> dict[str, str]:
    """The page's SVG charts, ready to embed (every label escaped here)."""
    from urllib.parse import urlencode

    return {"weekly": stacked_weeks(data["weekly"], label), "outlets": bars(data["outlets"]),
            "targets": bars(data["targets"], lambda t: "/-/monitor/charts?" + urlencode({"target": t})),
            "timeline": timeline(data["timeline"], label)}
